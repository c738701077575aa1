// autan's chat app. Conversations live on the server (/api/...); answers stream from
// /v1/chat/completions like any client's, and are saved as they grow, so a crash keeps them.
// This file holds the state and what the user can do; api.js talks to the server, tree.js keeps
// the messages, view.js draws, saving.js and titles.js do one job each.
import { loadAdmin, showLogin, signIn, wireAdmin } from "./accounts.js";
import { api, complete, listModels, onUnauthorized, streamChat } from "./api.js";
import { drawLeaderboard } from "./leaderboard.js";
import { Saver } from "./saving.js";
import { cleanTitle, titleFromMessage, titleRequest } from "./titles.js";
import { MessageTree } from "./tree.js";
import * as view from "./view.js";

const { $ } = view;
const SAVE_EVERY_MS = 500;
const SAVE_TIMEOUT_MS = 30_000; // a server that hangs on a save must not hold the answer forever
const TITLE_TIMEOUT_MS = 30_000;
const DEFAULTS = { model: "", system_prompt: "", temperature: 0.7, top_p: 1, max_tokens: null, safe_prompt: false };

const state = {
  conversations: [],
  conversation: null, // the open conversation's settings and title
  tree: new MessageTree(), // and its messages
  draft: {}, // settings chosen before the first message: they go into the new conversation
  models: [], // the served models' cards
  streaming: null, // { controller, messageId } while an answer is written
  me: null, // what /api/me said: locked, signed in, admin
};

const chosenModel = () => $("model").value || state.conversation?.model || state.models[0]?.id || "";
const chosenCard = () => state.models.find((m) => m.id === chosenModel());

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// Work started by a click: a failure is shown, never left as an uncaught rejection.
async function noticed(work) {
  try {
    return await work();
  } catch (error) {
    showNotice(error.message);
  }
}

// ---- conversations --------------------------------------------------------------------------

// The conversation's settings and its tree; an answer still being written in it is the live one,
// not the partial copy the server has saved so far.
function setConversation(conversation) {
  const live = state.streaming?.reply;
  const messages = (conversation?.messages || []).map((m) => (live && m.id === live.id ? live : m));
  state.conversation = conversation && { ...conversation, messages: undefined };
  state.tree = new MessageTree(messages, conversation?.current_leaf_id ?? null);
}

async function loadConversations() {
  const query = $("search").value.trim();
  state.conversations = await api(`/api/conversations?q=${encodeURIComponent(query)}`);
  view.renderSidebar(state.conversations, { openId: state.conversation?.id, query, actions: sidebarActions });
}

// The leaderboard takes the place of the chat (#leaderboard); opening a chat brings the chat back.
async function showLeaderboard() {
  closeSidebar();
  const board = await api("/api/leaderboard");
  drawLeaderboard(board, $("leaderboard"));
  for (const id of ["messages", "composer"]) $(id).hidden = true;
  $("leaderboard").hidden = false;
  history.replaceState(null, "", "#leaderboard");
}

function hideLeaderboard() {
  $("leaderboard").hidden = true;
  for (const id of ["messages", "composer"]) $(id).hidden = false;
}

async function openConversation(id) {
  const opened = await api(`/api/conversations/${id}`);
  hideLeaderboard();
  setConversation(opened);
  location.hash = id;
  renderSettings();
  render({ toBottom: true });
  await loadConversations();
}

async function ensureConversation() {
  if (state.conversation) return state.conversation;
  const draft = state.draft;
  state.draft = {}; // what is chosen while the POST is out is saved after it
  setConversation(await api("/api/conversations", { method: "POST", body: { model: chosenModel(), ...draft } }));
  location.hash = state.conversation.id;
  const later = state.draft;
  state.draft = {};
  if (Object.keys(later).length) await saveSettings(later);
  await loadConversations();
  return state.conversation;
}

async function saveSettings(changes) {
  if (!state.conversation) {
    Object.assign(state.draft, changes); // kept for the conversation the first message starts
    return;
  }
  const saved = await api(`/api/conversations/${state.conversation.id}`, { method: "PATCH", body: changes });
  if (state.conversation?.id !== saved.id) return; // another chat was opened meanwhile
  delete saved.messages; // the tree keeps its own: an answer may be growing in it
  state.conversation = saved;
  if ("current_leaf_id" in changes) state.tree.leafId = saved.current_leaf_id;
}

// A message stored in conversation `id`, and put in the tree if that chat is still the one open.
async function addMessage(id, message) {
  const body = { ...message, parent_id: message.parent_id ?? null };
  const saved = await api(`/api/conversations/${id}/messages`, { method: "POST", body });
  return state.conversation?.id === id ? state.tree.add(saved) : saved;
}

function newChat() {
  closeSidebar();
  hideLeaderboard();
  setConversation(null);
  state.draft = {};
  history.replaceState(null, "", location.pathname);
  renderSettings();
  render();
  view.renderSidebar(state.conversations, { openId: null, query: $("search").value.trim(), actions: sidebarActions });
  $("input").focus();
}

const sidebarActions = {
  open(id) {
    closeSidebar();
    openConversation(id).catch((error) => showNotice(error.message));
  },
  rename(c) {
    const title = prompt("Rename the chat:", c.title)?.trim();
    if (!title) return;
    return noticed(async () => {
      await api(`/api/conversations/${c.id}`, { method: "PATCH", body: { title } });
      if (state.conversation?.id === c.id) state.conversation.title = title;
      await loadConversations();
    });
  },
  remove(c) {
    if (!confirm(`Delete "${c.title}"? This cannot be undone.`)) return;
    return noticed(async () => {
      if (state.streaming?.conversationId === c.id) stop(); // its answer has nowhere to go
      await api(`/api/conversations/${c.id}`, { method: "DELETE" });
      if (state.conversation?.id === c.id) newChat();
      await loadConversations();
    });
  },
};

// ---- drawing --------------------------------------------------------------------------------

const messageActions = {
  switchVersion: (message, step) => noticed(() => switchVersion(message, step)),
  startEdit: (message) => view.editElement(message, (text) => edit(message, text), render),
  regenerate: (message) => regenerate(message),
};

const messageView = () => ({ tree: state.tree, streaming: state.streaming, actions: messageActions });

// The settings panel, from the open conversation (or the draft of a new one): on opening a chat
// only, so what the user is typing there is never overwritten by a redraw.
function renderSettings() {
  const settings = state.conversation || { ...DEFAULTS, ...state.draft };
  if (settings.model && state.models.some((m) => m.id === settings.model)) $("model").value = settings.model;
  $("system-prompt").value = settings.system_prompt;
  $("temperature").value = settings.temperature;
  $("top-p").value = settings.top_p;
  $("max-tokens").value = settings.max_tokens ?? "";
  $("safe-prompt").checked = settings.safe_prompt;
}

function render({ toBottom = false } = {}) {
  const c = state.conversation;
  for (const format of ["md", "json"]) {
    $(`export-${format}`).hidden = !c;
    if (c) $(`export-${format}`).href = `/api/conversations/${c.id}/export?format=${format}`;
  }
  $("send").hidden = Boolean(state.streaming);
  $("stop").hidden = !state.streaming;
  if (c) view.renderMessages(state.tree.branch(), messageView(), toBottom);
  else view.renderWelcome(chosenCard(), (text) => send(text), Boolean(state.streaming || document.body.dataset.busy));
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

const idle = () => !state.streaming && !document.body.dataset.busy;

// Sends the box's text, or a suggestion's (which leaves the box as it is).
function send(suggestion) {
  const typed = suggestion === undefined;
  const text = typed ? $("input").value : suggestion;
  if (!idle() || !text.trim()) return;
  return busy(async () => {
    let user;
    let first = false;
    let id;
    try {
      const conversation = await ensureConversation();
      id = conversation.id;
      first = conversation.title === "New chat" && !state.tree.messages.size;
      user = await addMessage(id, { role: "user", content: text, parent_id: state.tree.branch().at(-1)?.id });
    } catch (error) {
      showNotice(`Not sent: ${error.message}.${typed ? " Your message is still in the box." : ""}`);
      throw error; // the text stays in the box: nothing the user typed is lost
    }
    if (typed && $("input").value === text) $("input").value = ""; // saved: now it may go
    showNotice("");
    render({ toBottom: true });
    await answer(user);
    if (first) await nameConversation(id, text);
  });
}

function requestFor(conversation, model) {
  const messages = [];
  if (conversation.system_prompt) messages.push({ role: "system", content: conversation.system_prompt });
  for (const m of state.tree.branch()) if (m.content) messages.push({ role: m.role, content: m.content });
  return {
    model,
    messages,
    stream_options: { continuous_usage_stats: true }, // the token count so far, even when stopped
    temperature: conversation.temperature,
    top_p: conversation.top_p,
    max_tokens: conversation.max_tokens || undefined,
    safe_prompt: conversation.safe_prompt,
    guardrails: conversation.safe_prompt || undefined, // safe mode: the server's rails too
  };
}

async function answer(userMessage) {
  const conversation = state.conversation;
  const model = chosenModel();
  state.tree.leafId = userMessage.id;
  const body = requestFor(conversation, model);
  const controller = new AbortController();
  // before the answer is drawn: it is live, not interrupted
  state.streaming = { controller, messageId: null, reply: null, conversationId: conversation.id };
  render({ toBottom: true });
  let reply;
  try {
    const draft = { role: "assistant", content: "", parent_id: userMessage.id, status: "streaming", model };
    reply = await addMessage(conversation.id, draft);
  } catch (error) {
    state.streaming = null;
    render();
    showNotice(`The answer could not be started: ${error.message}`);
    return;
  }
  state.streaming.messageId = reply.id;
  state.streaming.reply = reply;
  render({ toBottom: true });

  const saver = new Saver((changes) =>
    api(`/api/messages/${reply.id}`, { method: "PATCH", body: changes, signal: AbortSignal.timeout(SAVE_TIMEOUT_MS) }),
  );
  const painter = new view.FramePainter(view.paintBody);
  const started = performance.now();
  let firstAt = null;
  let lastAt = null;
  let lastSave = 0;
  let usage = null;
  let finish = null;
  let failure = null;
  let moderation = null;
  let status = "complete";
  try {
    for await (const chunk of streamChat(body, controller.signal)) {
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        firstAt ??= performance.now();
        lastAt = performance.now();
        reply.content += choice.delta.content;
        painter.request(reply);
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (choice?.moderation) moderation = choice.moderation; // a rail refused or stopped it: say why
      if (chunk.usage) usage = chunk.usage;
      if (performance.now() - lastSave > SAVE_EVERY_MS) {
        lastSave = performance.now();
        saver.save({ content: reply.content });
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
  painter.flush();
  const tokens = usage ? usage.completion_tokens : null;
  reply.stats = {
    tokens,
    tokens_per_second: tokens && firstAt && lastAt > firstAt ? (tokens - 1) / ((lastAt - firstAt) / 1000) : null,
    first_token_seconds: firstAt ? (firstAt - started) / 1000 : null,
    finish_reason: finish,
    error: failure,
    rail: moderation?.rail ?? null,
    categories: moderation?.categories ?? null,
  };
  reply.status = status;
  try {
    await saver.finish({ content: reply.content, status, stats: reply.stats });
  } catch (error) {
    showNotice(`The answer is shown but could not be saved: ${error.message}`);
  }
  const shown = state.tree.get(reply.id); // the chat may have been closed and opened again meanwhile
  if (shown && shown !== reply) Object.assign(shown, reply);
  state.streaming = null;
  render();
  loadConversations().catch(() => {}); // the server may be gone; the answer is already shown
}

function stop() {
  state.streaming?.controller.abort();
}

// An immediate title from the question, then the model's, once cleaned, if it gives a real one
// and nobody renamed the chat meanwhile.
async function nameConversation(id, firstMessage) {
  const placeholder = titleFromMessage(firstMessage);
  const rename = async (title) => {
    if (state.conversation?.id === id) await saveSettings({ title });
    else await api(`/api/conversations/${id}`, { method: "PATCH", body: { title } });
    await loadConversations();
  };
  try {
    await rename(placeholder);
    const messages = titleRequest(firstMessage);
    const reply = await complete({ model: chosenModel(), temperature: 0, max_tokens: 16, messages }, TITLE_TIMEOUT_MS);
    const choice = reply.choices[0];
    const title = cleanTitle(choice.message.content || "", { cut: choice.finish_reason === "length" });
    const now = (await api(`/api/conversations/${id}`)).title;
    if (title && now === placeholder) await rename(title);
  } catch (error) {
    console.warn("no title from the model:", error);
  }
}

function regenerate(assistantMessage) {
  if (!idle()) return;
  return busy(() => answer(state.tree.get(assistantMessage.parent_id)));
}

function edit(userMessage, text) {
  if (!idle()) return;
  return busy(async () => {
    const message = { role: "user", content: text, parent_id: userMessage.parent_id };
    const user = await addMessage(state.conversation.id, message);
    render();
    await answer(user);
  });
}

async function switchVersion(message, step) {
  const leaf = state.tree.stepVersion(message, step);
  if (!leaf) return;
  await saveSettings({ current_leaf_id: leaf });
  render();
}

// ---- wiring ---------------------------------------------------------------------------------

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
}

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
    searchTimer = setTimeout(() => loadConversations().catch((error) => showNotice(error.message)), 200);
  };
  $("toggle-settings").onclick = () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) loadAdmin(state.me, showNotice).catch((error) => showNotice(error.message));
  };
  $("toggle-sidebar").onclick = () => document.body.classList.toggle("sidebar-open");
  $("close-sidebar").onclick = closeSidebar;
  $("backdrop").onclick = closeSidebar;
  const setting = (id, read) => {
    $(id).onchange = () => saveSettings(read()).catch((error) => showNotice(error.message));
  };
  $("model").onchange = () => {
    const saved = saveSettings({ model: $("model").value }).catch((error) => showNotice(error.message));
    if (!state.conversation) render(); // the welcome names the model chosen (kept in the draft by now)
    return saved;
  };
  setting("system-prompt", () => ({ system_prompt: $("system-prompt").value }));
  setting("temperature", () => ({ temperature: Number($("temperature").value) }));
  setting("top-p", () => ({ top_p: Number($("top-p").value) }));
  setting("max-tokens", () => ({ max_tokens: $("max-tokens").value ? Number($("max-tokens").value) : null }));
  setting("safe-prompt", () => ({ safe_prompt: $("safe-prompt").checked }));
  $("import-button").onclick = () => $("import").click();
  $("show-leaderboard").onclick = () => showLeaderboard().catch((error) => showNotice(error.message));
  $("import").onchange = async () => {
    const file = $("import").files[0];
    if (!file) return;
    try {
      const imported = await api("/api/conversations/import", { method: "POST", body: await file.text() });
      await openConversation(imported.id);
    } catch (error) {
      showNotice(`Import failed: ${error.message}`);
    }
    $("import").value = "";
  };
  $("login-form").onsubmit = (event) => {
    event.preventDefault();
    signIn(state.me?.multi_user ? "/api/login" : "/api/session", begin);
  };
  $("register").onclick = () => signIn("/api/register", begin);
  $("logout").onclick = () =>
    noticed(async () => {
      await api("/api/logout", { method: "POST" });
      location.reload();
    });
  wireAdmin(() => state.me, showNotice);
  onUnauthorized(() => showLogin(state.me || {}));
}

async function begin() {
  state.me = await api("/api/me");
  if (!state.me.signed_in) {
    showLogin(state.me);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !state.me.locked;
  state.models = await listModels();
  view.renderModels(state.models);
  await loadConversations();
  const id = location.hash.slice(1);
  if (id === "leaderboard") await showLeaderboard().catch((error) => showNotice(error.message));
  else if (id) await openConversation(id).catch(() => newChat());
  else {
    renderSettings();
    render();
  }
  // only now: the settings drawn above would overwrite whatever was typed there before
  $("toggle-settings").disabled = false;
}

wire();
await begin().catch((error) => {
  $("app").hidden = false;
  showNotice(`The server could not be reached: ${error.message}. Reload the page to try again.`);
});
