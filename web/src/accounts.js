// Signing in, and the admin's users and keys. A locked server asks first: a name and password
// (accounts), or its API key, typed once; the app then holds a session cookie, never the key.
import { api } from "./api.js";
import { $, button } from "./view.js";

export function showLogin(me = {}) {
  $("login").hidden = false;
  $("app").hidden = true;
  $("account-fields").hidden = !me.multi_user;
  $("key-fields").hidden = Boolean(me.multi_user);
  for (const input of $("account-fields").querySelectorAll("input")) input.required = Boolean(me.multi_user);
  $("api-key").required = !me.multi_user;
  $("register").hidden = !me.signup;
}

// Sign in (or register) with what the form holds; `signedIn` runs once the server agrees.
export async function signIn(path, signedIn) {
  const form = new FormData($("login-form"));
  const body =
    path === "/api/session"
      ? { api_key: form.get("api_key") }
      : { username: form.get("username"), password: form.get("password") };
  try {
    await api(path, { method: "POST", body });
    $("login-form").reset();
    $("login-error").textContent = "";
    await signedIn();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

function listItem(text, action) {
  const li = document.createElement("li");
  li.textContent = `${text} `;
  li.append(action);
  return li;
}

// The admin's panel: every user and key, each with its remove button. `notice` shows a failure.
export async function loadAdmin(me, notice) {
  if (!(me && me.admin && me.multi_user)) return;
  $("admin").hidden = false;
  const [users, keys] = await Promise.all([api("/api/admin/users"), api("/api/admin/keys")]);
  const confirmThen = async (question, work) => {
    if (!confirm(question)) return;
    try {
      await work();
    } catch (error) {
      notice(error.message);
    }
    await loadAdmin(me, notice).catch((error) => notice(error.message));
  };
  $("users").replaceChildren(
    ...users.map((u) =>
      listItem(
        `${u.username}${u.admin ? " (admin)" : ""}`,
        button("Remove", `Remove ${u.username}`, () =>
          confirmThen(`Remove ${u.username} and their chats?`, () =>
            api(`/api/admin/users/${u.id}`, { method: "DELETE" }),
          ),
        ),
      ),
    ),
  );
  $("keys").replaceChildren(
    ...keys.map((k) =>
      listItem(
        `${k.name || "(no name)"} · ${k.created_at.slice(0, 10)}`,
        button("Revoke", `Revoke ${k.name || k.id}`, () =>
          confirmThen("Revoke this key?", () => api(`/api/admin/keys/${k.id}`, { method: "DELETE" })),
        ),
      ),
    ),
  );
}

export function wireAdmin(me, notice) {
  $("add-user").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData($("add-user"));
    const body = { username: form.get("username"), password: form.get("password"), admin: form.get("admin") === "on" };
    try {
      await api("/api/admin/users", { method: "POST", body });
      $("add-user").reset();
    } catch (error) {
      notice(error.message);
    }
    await loadAdmin(me(), notice).catch((error) => notice(error.message));
  };
  $("add-key").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData($("add-key"));
    try {
      const made = await api("/api/admin/keys", { method: "POST", body: { name: form.get("name") } });
      $("new-key").textContent = `New key (shown once): ${made.key}`;
      $("add-key").reset();
    } catch (error) {
      notice(error.message);
    }
    await loadAdmin(me(), notice).catch((error) => notice(error.message));
  };
}
