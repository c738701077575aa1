// autan's chat app. Conversations live on the server (/api/...); answers stream from
// /v1/chat/completions like any client's, and are saved as they grow, so a crash keeps them.
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";
import { Marked } from "marked";
import markedKatex from "marked-katex-extension";

const $ = (id) => document.getElementById(id);
const SAVE_EVERY_MS = 500;
const AUTH_PATHS = ["/api/login", "/api/register", "/api/session"];

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// Raw HTML in a model's answer is shown as the text it is; DOMPurify still cleans the rest.
const markdown = new Marked({ gfm: true, breaks: false, renderer: { html: (token) => escapeHtml(token.text) } });
markdown.use(markedKatex({ throwOnError: false, nonStandard: true }));

const state = {
  conversations: [],
  conversation: null, // the open conversation, with all its messages
  draft: {}, // settings chosen before the first message: they go into the new conversation
  models: [],
  streaming: null, // { controller, messageId }
  me: null, // what /api/me said: locked, signed in, admin
};

// ---- server calls ---------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) },
    body: options.body && typeof options.body !== "string" ? JSON.stringify(options.body) : options.body,
  });
  if (response.status === 401 && path.startsWith("/api/") && !AUTH_PATHS.includes(path)) {
    showLogin();
    throw new Error("sign in first");
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).message || message;
    } catch {}
    throw new Error(message);
  }
  return response.json();
}

// /v1 is called with the session cookie the sign-in set (an account, or an API key typed once):
// the key itself is never kept in the page.
async function loadModels() {
  const response = await fetch("/v1/models");
  state.models = response.ok ? (await response.json()).data.map((m) => m.id) : [];
  $("model").replaceChildren(...state.models.map((id) => new Option(id, id)));
}

async function loadConversations() {
  const query = $("search").value.trim();
  state.conversations = await api(`/api/conversations?q=${encodeURIComponent(query)}`);
  renderSidebar();
}

async function openConversation(id) {
  state.conversation = await api(`/api/conversations/${id}`);
  location.hash = id;
  renderConversation();
  renderSidebar();
}

async function ensureConversation() {
  if (state.conversation) return state.conversation;
  state.conversation = await api("/api/conversations", {
    method: "POST",
    body: { model: $("model").value || state.models[0] || "", ...state.draft },
  });
  state.draft = {};
  location.hash = state.conversation.id;
  await loadConversations();
  return state.conversation;
}

async function saveSettings(changes) {
  if (!state.conversation) {
    Object.assign(state.draft, changes); // kept for the conversation the first message starts
    return;
  }
  state.conversation = await api(`/api/conversations/${state.conversation.id}`, { method: "PATCH", body: changes });
}

// ---- the message tree -----------------------------------------------------------------------

function byId() {
  return new Map(state.conversation.messages.map((m) => [m.id, m]));
}

function children(parentId) {
  return state.conversation.messages.filter((m) => m.parent_id === parentId);
}

function branch() {
  // from the first message to the current leaf
  const messages = byId();
  const path = [];
  let at = state.conversation.current_leaf_id;
  while (at && messages.has(at)) {
    path.push(messages.get(at));
    at = messages.get(at).parent_id;
  }
  return path.reverse();
}

function deepestLeaf(messageId) {
  // the newest path down from a message: where switching to that branch lands
  let at = messageId;
  for (;;) {
    const kids = children(at);
    if (!kids.length) return at;
    at = kids[kids.length - 1].id;
  }
}

async function addMessage(message) {
  const saved = await api(`/api/conversations/${state.conversation.id}/messages`, { method: "POST", body: message });
  state.conversation.messages.push(saved);
  state.conversation.current_leaf_id = saved.id;
  return saved;
}

// ---- generation -----------------------------------------------------------------------------

// `data-busy` on <body> from the moment a send starts until its answer is saved (tests wait on it)
async function busy(work) {
  document.body.dataset.busy = "1";
  try {
    await work();
  } catch (error) {
    console.warn(error);
  } finally {
    delete document.body.dataset.busy;
  }
}

function send() {
  const text = $("input").value;
  if (state.streaming || document.body.dataset.busy || !text.trim()) return;
  return busy(async () => {
    let user;
    try {
      const conversation = await ensureConversation();
      const parent = branch().at(-1);
      user = await addMessage({ role: "user", content: text, parent_id: parent ? parent.id : null });
      if (conversation.title === "New chat") conversation.naming = text;
    } catch (error) {
      showNotice(`Not sent: ${error.message}. Your message is still in the box.`);
      throw error; // the text stays in the box: nothing the user typed is lost
    }
    if ($("input").value === text) $("input").value = ""; // saved: now it may go
    showNotice("");
    renderConversation();
    await answer(user);
    const conversation = state.conversation;
    if (conversation.naming) {
      const first = conversation.naming;
      delete conversation.naming;
      await nameConversation(first).catch(() => {});
    }
  });
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

async function answer(userMessage) {
  const conversation = state.conversation;
  const model = $("model").value || conversation.model;
  const controller = new AbortController();
  state.streaming = { controller, messageId: null }; // before the answer is drawn: it is live, not interrupted
  setStreaming(true);
  let reply;
  try {
    reply = await addMessage({ role: "assistant", content: "", parent_id: userMessage.id, status: "streaming", model });
  } catch (error) {
    state.streaming = null;
    setStreaming(false);
    showNotice(`The answer could not be started: ${error.message}`);
    return;
  }
  state.streaming.messageId = reply.id;
  renderConversation();
  const history = branch().filter((m) => m.id !== reply.id);
  const messages = [];
  if (conversation.system_prompt) messages.push({ role: "system", content: conversation.system_prompt });
  for (const m of history) if (m.content) messages.push({ role: m.role, content: m.content });

  const started = performance.now();
  let firstAt = null;
  let lastAt = null;
  let usage = null;
  let finish = null;
  let failure = null;
  let lastSave = 0;
  let status = "complete";
  // Saves go one after another: a partial save can never land after the final one.
  let saving = Promise.resolve();
  const save = (extra = {}) => {
    const body = { content: reply.content, ...extra };
    saving = saving.then(() => api(`/api/messages/${reply.id}`, { method: "PATCH", body }).catch(() => {}));
    return saving;
  };

  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      signal: controller.signal,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model,
        messages,
        stream: true,
        stream_options: { continuous_usage_stats: true }, // the token count so far, even when stopped
        temperature: conversation.temperature,
        top_p: conversation.top_p,
        max_tokens: conversation.max_tokens || undefined,
        safe_prompt: conversation.safe_prompt,
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.message || response.statusText);
    }
    for await (const chunk of events(response)) {
      if (chunk.object === "error") throw new Error(chunk.message);
      const choice = chunk.choices[0];
      if (choice && choice.delta.content) {
        firstAt = firstAt ?? performance.now();
        lastAt = performance.now();
        reply.content += choice.delta.content;
        updateMessage(reply);
      }
      if (choice && choice.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
      if (performance.now() - lastSave > SAVE_EVERY_MS) {
        lastSave = performance.now();
        save();
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      status = "stopped";
      finish = "stopped";
    } else {
      status = "error"; // shown beside the answer, never in it: the model must not read it back
      failure = error.message;
    }
  }
  const tokens = usage ? usage.completion_tokens : null;
  reply.stats = {
    tokens,
    tokens_per_second: tokens && firstAt && lastAt > firstAt ? (tokens - 1) / ((lastAt - firstAt) / 1000) : null,
    first_token_seconds: firstAt ? (firstAt - started) / 1000 : null,
    finish_reason: finish,
    error: failure,
  };
  reply.status = status;
  await save({ status, stats: reply.stats });
  state.streaming = null;
  setStreaming(false);
  updateMessage(reply);
  loadConversations().catch(() => {}); // the server may be gone; the answer is already shown
}

// Server-sent events of a response, parsed by the browser's own stream decoder: one JSON chunk each.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const parts = buffer.split("\n\n");
    buffer = parts.pop();
    for (const part of parts) {
      const data = part.replace(/^data: /, "");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

function stop() {
  if (state.streaming) state.streaming.controller.abort();
}

async function nameConversation(firstMessage) {
  // an immediate title from the question, then a better one from the model if it gives one
  await saveSettings({ title: firstMessage.slice(0, 60).replace(/\s+/g, " ") });
  await loadConversations();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model: $("model").value,
        temperature: 0,
        max_tokens: 12,
        messages: [
          { role: "user", content: `Write a title of at most five words for a chat that begins:\n\n${firstMessage}` },
        ],
      }),
    });
    if (!response.ok) return;
    const title = (await response.json()).choices[0].message.content.replace(/["*#\n]/g, " ").trim();
    if (title && title.length <= 80 && !state.streaming) {
      await saveSettings({ title });
      await loadConversations();
    }
  } catch {}
}

function regenerate(assistantMessage) {
  return busy(async () => {
    const user = byId().get(assistantMessage.parent_id);
    state.conversation.current_leaf_id = user.id;
    await answer(user);
  });
}

function edit(userMessage, text) {
  return busy(async () => {
    const user = await addMessage({ role: "user", content: text, parent_id: userMessage.parent_id });
    renderConversation();
    await answer(user);
  });
}

async function switchBranch(message, step) {
  const siblings = children(message.parent_id);
  const index = siblings.findIndex((m) => m.id === message.id) + step;
  if (index < 0 || index >= siblings.length) return;
  const leaf = deepestLeaf(siblings[index].id);
  await saveSettings({ current_leaf_id: leaf });
  renderConversation();
}

const DEFAULTS = { model: "", system_prompt: "", temperature: 0.7, top_p: 1, max_tokens: null, safe_prompt: false };

// ---- rendering ------------------------------------------------------------------------------

function renderMarkdown(text) {
  // the model's text is untrusted: marked renders, DOMPurify removes anything that could run
  const html = DOMPurify.sanitize(markdown.parse(text), { USE_PROFILES: { html: true, mathMl: true, svg: true } });
  const holder = document.createElement("div");
  holder.className = "markdown";
  holder.innerHTML = html;
  for (const block of holder.querySelectorAll("pre > code")) {
    hljs.highlightElement(block);
    const copy = document.createElement("button");
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    copy.onclick = () => {
      navigator.clipboard?.writeText(block.textContent);
      copy.textContent = "Copied";
      setTimeout(() => (copy.textContent = "Copy"), 1500);
    };
    block.parentElement.prepend(copy);
  }
  return holder;
}

function statsLine(message) {
  const s = message.stats;
  if (!s) {
    if (message.status !== "streaming") return "";
    const live = state.streaming && [message.id, null].includes(state.streaming.messageId);
    return live ? "…" : "interrupted: the server stopped while writing this";
  }
  const parts = [];
  if (s.tokens != null) parts.push(`${s.tokens} tokens`);
  if (s.tokens_per_second) parts.push(`${s.tokens_per_second.toFixed(1)} tok/s`);
  if (s.first_token_seconds != null) parts.push(`first token ${s.first_token_seconds.toFixed(2)} s`);
  if (s.finish_reason) parts.push(s.finish_reason);
  if (s.error) parts.push(`error: ${s.error}`);
  if (message.status === "streaming") parts.push("interrupted");
  return parts.join(" · ");
}

function messageElement(message) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.dataset.id = message.id;
  article.setAttribute("aria-label", `${message.role} message`);
  const body = document.createElement("div");
  body.className = "body";
  if (message.role === "user") body.textContent = message.content;
  else body.append(renderMarkdown(message.content));
  article.append(body);

  const tools = document.createElement("div");
  tools.className = "tools";
  const siblings = children(message.parent_id);
  if (siblings.length > 1) {
    const index = siblings.findIndex((m) => m.id === message.id);
    const back = button("‹", "Previous version", () => switchBranch(message, -1));
    const next = button("›", "Next version", () => switchBranch(message, 1));
    const count = document.createElement("span");
    count.className = "branch";
    count.textContent = `${index + 1}/${siblings.length}`;
    tools.append(back, count, next);
  }
  if (message.role === "user") {
    tools.append(button("Edit", "Edit this message", () => startEdit(article, message)));
  } else {
    tools.append(button("Regenerate", "Regenerate this answer", () => regenerate(message)));
    const stats = document.createElement("span");
    stats.className = "stats";
    stats.textContent = statsLine(message);
    tools.append(stats);
  }
  article.append(tools);
  return article;
}

function button(text, label, onclick) {
  const b = document.createElement("button");
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.onclick = onclick;
  b.disabled = Boolean(state.streaming);
  return b;
}

function startEdit(article, message) {
  const area = document.createElement("textarea");
  area.value = message.content;
  area.setAttribute("aria-label", "Edit message");
  const save = button("Save & send", "Save the edit and send", () => edit(message, area.value));
  const cancel = button("Cancel", "Cancel the edit", () => renderConversation());
  article.replaceChildren(area, save, cancel);
  area.focus();
}

function updateMessage(message) {
  const old = document.querySelector(`article[data-id="${message.id}"]`);
  if (old) old.replaceWith(messageElement(message));
  scrollDown();
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function renderConversation() {
  const c = state.conversation;
  $("messages").replaceChildren(...(c ? branch().map(messageElement) : []));
  const settings = c || { ...DEFAULTS, ...state.draft };
  if (settings.model && state.models.includes(settings.model)) $("model").value = settings.model;
  $("system-prompt").value = settings.system_prompt;
  $("temperature").value = settings.temperature;
  $("top-p").value = settings.top_p;
  $("max-tokens").value = settings.max_tokens ?? "";
  $("safe-prompt").checked = settings.safe_prompt;
  if (c) {
    $("export-md").href = `/api/conversations/${c.id}/export?format=md`;
    $("export-json").href = `/api/conversations/${c.id}/export?format=json`;
  }
  $("export-md").hidden = $("export-json").hidden = !c;
  scrollDown();
}

function renderSidebar() {
  const items = state.conversations.map((c) => {
    const li = document.createElement("li");
    li.className = state.conversation && state.conversation.id === c.id ? "active" : "";
    const open = document.createElement("button");
    open.className = "title";
    open.textContent = c.title;
    open.onclick = () => {
      closeSidebar();
      openConversation(c.id);
    };
    const rename = button("✎", `Rename ${c.title}`, async () => {
      const title = prompt("Rename the chat:", c.title);
      if (!title) return;
      await api(`/api/conversations/${c.id}`, { method: "PATCH", body: { title } });
      if (state.conversation && state.conversation.id === c.id) state.conversation.title = title;
      loadConversations();
    });
    const remove = button("×", `Delete ${c.title}`, async () => {
      if (!confirm(`Delete "${c.title}"? This cannot be undone.`)) return;
      await api(`/api/conversations/${c.id}`, { method: "DELETE" });
      if (state.conversation && state.conversation.id === c.id) newChat();
      loadConversations();
    });
    rename.disabled = remove.disabled = false;
    li.append(open, rename, remove);
    return li;
  });
  $("conversations").replaceChildren(...items);
}

function setStreaming(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  for (const b of document.querySelectorAll(".messages button")) b.disabled = on;
}

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
}

function newChat() {
  closeSidebar();
  state.conversation = null;
  state.draft = {};
  history.replaceState(null, "", location.pathname);
  renderConversation();
  renderSidebar();
  $("input").focus();
}

// ---- accounts ---------------------------------------------------------------------------

// A locked server asks first: a name and password (accounts), or its API key, typed once.
function showLogin() {
  const me = state.me || {};
  $("login").hidden = false;
  $("app").hidden = true;
  $("account-fields").hidden = !me.multi_user;
  $("key-fields").hidden = Boolean(me.multi_user);
  for (const input of $("account-fields").querySelectorAll("input")) input.required = Boolean(me.multi_user);
  $("api-key").required = !me.multi_user;
  $("register").hidden = !me.signup;
}

async function signIn(path) {
  const form = new FormData($("login-form"));
  const body = path === "/api/session"
    ? { api_key: form.get("api_key") }
    : { username: form.get("username"), password: form.get("password") };
  try {
    await api(path, { method: "POST", body });
    $("login-form").reset();
    $("login-error").textContent = "";
    await begin();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

// The admin's users and keys, in the settings panel.
async function loadAdmin() {
  if (!(state.me && state.me.admin && state.me.multi_user)) return;
  $("admin").hidden = false;
  const [users, keys] = await Promise.all([api("/api/admin/users"), api("/api/admin/keys")]);
  $("users").replaceChildren(
    ...users.map((u) => {
      const li = document.createElement("li");
      li.textContent = `${u.username}${u.admin ? " (admin)" : ""} `;
      li.append(button("Remove", `Remove ${u.username}`, () => confirmThen(`Remove ${u.username} and their chats?`, () =>
        api(`/api/admin/users/${u.id}`, { method: "DELETE" }))));
      return li;
    }),
  );
  $("keys").replaceChildren(
    ...keys.map((k) => {
      const li = document.createElement("li");
      li.textContent = `${k.name || "(no name)"} · ${k.created_at.slice(0, 10)} `;
      li.append(button("Revoke", `Revoke ${k.name || k.id}`, () => confirmThen("Revoke this key?", () =>
        api(`/api/admin/keys/${k.id}`, { method: "DELETE" }))));
      return li;
    }),
  );
}

async function confirmThen(question, work) {
  if (!confirm(question)) return;
  try {
    await work();
  } catch (error) {
    showNotice(error.message);
  }
  loadAdmin();
}

// ---- wiring ---------------------------------------------------------------------------------

function wire() {
  $("composer").onsubmit = (event) => {
    event.preventDefault();
    send(); // the box is emptied once the message is saved, not before
  };
  $("input").onkeydown = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  };
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      stop();
      closeSidebar();
    }
  });
  $("stop").onclick = stop;
  $("new-chat").onclick = newChat;
  let searchTimer;
  $("search").oninput = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadConversations, 200);
  };
  $("toggle-settings").onclick = () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) loadAdmin().catch((error) => showNotice(error.message));
  };
  $("toggle-sidebar").onclick = () => document.body.classList.toggle("sidebar-open");
  $("close-sidebar").onclick = closeSidebar;
  $("backdrop").onclick = closeSidebar;
  $("model").onchange = () => saveSettings({ model: $("model").value });
  $("system-prompt").onchange = () => saveSettings({ system_prompt: $("system-prompt").value });
  $("temperature").onchange = () => saveSettings({ temperature: Number($("temperature").value) });
  $("top-p").onchange = () => saveSettings({ top_p: Number($("top-p").value) });
  $("max-tokens").onchange = () => {
    const value = $("max-tokens").value;
    saveSettings({ max_tokens: value ? Number(value) : null });
  };
  $("safe-prompt").onchange = () => saveSettings({ safe_prompt: $("safe-prompt").checked });
  $("import").onchange = async () => {
    const file = $("import").files[0];
    if (!file) return;
    try {
      const imported = await api("/api/conversations/import", { method: "POST", body: await file.text() });
      await loadConversations();
      await openConversation(imported.id);
    } catch (error) {
      alert(`Import failed: ${error.message}`);
    }
    $("import").value = "";
  };
  $("login-form").onsubmit = (event) => {
    event.preventDefault();
    signIn(state.me && state.me.multi_user ? "/api/login" : "/api/session");
  };
  $("register").onclick = () => signIn("/api/register");
  $("logout").onclick = async () => {
    await api("/api/logout", { method: "POST" });
    location.reload();
  };
  $("add-user").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData($("add-user"));
    const body = { username: form.get("username"), password: form.get("password"), admin: form.get("admin") === "on" };
    try {
      await api("/api/admin/users", { method: "POST", body });
      $("add-user").reset();
    } catch (error) {
      showNotice(error.message);
    }
    loadAdmin();
  };
  $("add-key").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData($("add-key"));
    try {
      const made = await api("/api/admin/keys", { method: "POST", body: { name: form.get("name") } });
      $("new-key").textContent = `New key (shown once): ${made.key}`;
      $("add-key").reset();
    } catch (error) {
      showNotice(error.message);
    }
    loadAdmin();
  };
}

async function begin() {
  state.me = await api("/api/me");
  if (!state.me.signed_in) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !state.me.locked;
  await loadModels();
  await loadConversations();
  const id = location.hash.slice(1);
  if (id) await openConversation(id).catch(() => newChat());
  else renderConversation();
}

wire();
await begin();
