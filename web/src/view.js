// What the page shows, built from the app's state: the messages of the branch, the welcome of an
// empty chat, the model picker and the sidebar. Actions come in from app.js; nothing here calls
// the server.
import { copyText } from "./clipboard.js";
import { describeModel, formatBytes, formatContext, formatMoment, formatParameters } from "./format.js";
import { renderMarkdown } from "./markdown.js";

export const $ = (id) => document.getElementById(id);

export function button(text, label, onclick, disabled = false) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.onclick = onclick;
  b.disabled = disabled;
  return b;
}

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- the model picker -----------------------------------------------------------------------

// "smollm2 (135M · 98 MB · 8K context)": what each served model is, before choosing it.
export function modelLabel(card) {
  const facts = [formatParameters(card.parameters), formatBytes(card.size_bytes)];
  if (card.max_context_length) facts.push(`${formatContext(card.max_context_length)} context`);
  const known = facts.filter(Boolean);
  return known.length ? `${card.id} (${known.join(" · ")})` : card.id;
}

export function renderModels(cards, selected) {
  $("model").replaceChildren(
    ...cards.map((card) => {
      const option = new Option(modelLabel(card), card.id);
      option.title = describeModel(card);
      return option;
    }),
  );
  if (selected && cards.some((c) => c.id === selected)) $("model").value = selected;
}

// ---- an empty chat --------------------------------------------------------------------------

const SUGGESTIONS = [
  "Explain what a sliding-window attention cache is, in two sentences.",
  "Write a Python function that checks whether a word is a palindrome.",
  "Suggest three things to see in Toulouse in one day.",
  "What is the difference between weather and climate?",
];

export function welcomeElement(card, pick, busy = false) {
  const welcome = element("section", "welcome");
  welcome.setAttribute("aria-label", "Welcome");
  welcome.append(element("h1", "", "What can I help with?"));
  if (card) {
    const model = element("p", "model-line");
    model.append(element("strong", "", card.id));
    const facts = describeModel(card);
    if (facts) model.append(` · ${facts}`);
    welcome.append(model);
  } else {
    welcome.append(element("p", "model-line", "No model is served: start `autan serve` with one."));
  }
  const list = element("div", "suggestions");
  list.setAttribute("aria-label", "Suggested prompts");
  for (const text of SUGGESTIONS) {
    const b = button(text, `Ask: ${text}`, () => pick(text), !card || busy);
    b.className = "suggestion";
    list.append(b);
  }
  welcome.append(list);
  return welcome;
}

// ---- messages -------------------------------------------------------------------------------

// The line under an answer: tokens, speed, time to the first one, why it ended.
export function statsLine(message, live) {
  const s = message.stats;
  if (!s) {
    if (message.status !== "streaming") return "";
    return live ? "…" : "interrupted: the server stopped while writing this";
  }
  const parts = [];
  if (s.tokens != null) parts.push(`${s.tokens} tokens`);
  if (s.tokens_per_second) parts.push(`${s.tokens_per_second.toFixed(1)} tok/s`);
  if (s.first_token_seconds != null) parts.push(`first token ${s.first_token_seconds.toFixed(2)} s`);
  if (s.rail) {
    const why = (s.categories || []).map((c) => c.replaceAll("_", " ")).join(", ") || "unsafe content";
    parts.push(s.rail === "input" ? `refused by the guardrails: ${why}` : `stopped by the guardrails: ${why}`);
  } else if (s.finish_reason) parts.push(s.finish_reason);
  if (s.error) parts.push(`error: ${s.error}`);
  if (message.status === "streaming") parts.push("interrupted");
  return parts.join(" · ");
}

function bodyOf(message) {
  const body = element("div", "body");
  if (message.role === "user") body.textContent = message.content;
  else body.append(renderMarkdown(message.content));
  return body;
}

// One message with its tools. `view`: { tree, streaming (null, or { messageId } of the answer being
// written, null until it is stored), actions }.
export function messageElement(message, view) {
  const { tree, streaming, actions } = view;
  const busy = Boolean(streaming);
  const article = element("article", `message ${message.role}`);
  article.dataset.id = message.id;
  article.setAttribute("aria-label", `${message.role} message`);
  article.append(bodyOf(message));

  const tools = element("div", "tools");
  const { index, count } = tree.versions(message);
  if (count > 1) {
    tools.append(
      button("‹", "Previous version", () => actions.switchVersion(message, -1), busy),
      element("span", "branch", `${index + 1}/${count}`),
      button("›", "Next version", () => actions.switchVersion(message, 1), busy),
    );
  }
  const copy = button("Copy", "Copy this message", () => copyText(message.content, copy));
  if (message.role === "user") {
    tools.append(button("Edit", "Edit this message", () => actions.startEdit(message), busy));
  } else {
    tools.append(button("Regenerate", "Regenerate this answer", () => actions.regenerate(message), busy));
  }
  tools.append(copy);
  if (message.created_at) {
    const time = element("time", "when", formatMoment(message.created_at));
    time.dateTime = message.created_at;
    time.title = new Date(message.created_at).toLocaleString();
    tools.append(time);
  }
  if (message.role !== "user") {
    const live = busy && [message.id, null].includes(streaming.messageId);
    tools.append(element("span", "stats", statsLine(message, live)));
  }
  article.append(tools);
  return article;
}

export function editElement(message, save, cancel) {
  const article = document.querySelector(`article[data-id="${message.id}"]`);
  const area = document.createElement("textarea");
  area.value = message.content;
  area.setAttribute("aria-label", "Edit message");
  const send = button("Save & send", "Save the edit and send", () => {
    send.disabled = true; // one click, one answer
    save(area.value);
  });
  article.replaceChildren(area, send, button("Cancel", "Cancel the edit", cancel));
  area.focus();
}

// Keeps the newest words in view, unless the reader has scrolled up to read something else.
function stickToBottom(update) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  update();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// The branch's messages; `toBottom` on opening a chat, else the reader's place is kept.
export function renderMessages(messages, view, toBottom) {
  const box = $("messages");
  stickToBottom(() => box.replaceChildren(...messages.map((m) => messageElement(m, view))));
  if (toBottom) box.scrollTop = box.scrollHeight;
}

export function renderWelcome(card, pick, busy) {
  $("messages").replaceChildren(welcomeElement(card, pick, busy));
}

// A streaming answer is drawn at most once per animation frame, however many pieces arrive in
// between: rendering its markdown on every piece would cost time quadratic in its length.
export class FramePainter {
  constructor(paint) {
    this.paint = paint;
    this.waiting = null;
    this.frame = 0;
  }

  request(message) {
    this.waiting = message;
    this.frame ||= requestAnimationFrame(() => this.flush());
  }

  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const message = this.waiting;
    this.waiting = null;
    if (message) this.paint(message);
  }
}

// The body of a streaming answer, redrawn in place (its tools stay as they are until it ends).
export function paintBody(message) {
  const old = document.querySelector(`article[data-id="${message.id}"] > .body`);
  if (old) stickToBottom(() => old.replaceWith(bodyOf(message)));
}

// ---- the sidebar ----------------------------------------------------------------------------

export function renderSidebar(conversations, { openId, query, actions }) {
  const items = conversations.map((c) => {
    const li = document.createElement("li");
    li.className = openId === c.id ? "active" : "";
    li.dataset.id = c.id;
    const open = element("button", "title", c.title);
    open.type = "button";
    open.title = c.title;
    open.onclick = () => actions.open(c.id);
    const rename = button("✎", `Rename ${c.title}`, () => actions.rename(c));
    li.append(open, rename, button("×", `Delete ${c.title}`, () => actions.remove(c)));
    return li;
  });
  $("conversations").replaceChildren(...items);
  const empty = $("no-chats");
  empty.hidden = items.length > 0;
  empty.textContent = query ? `No chats match “${query}”.` : "No chats yet: ask something to start one.";
}
