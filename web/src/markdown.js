// A model's answer as HTML. The text is untrusted: marked renders it, raw HTML in it stays the
// text it is, and DOMPurify removes anything that could run. Code blocks are highlighted and
// carry their language and a copy button.
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";
import { Marked } from "marked";
import markedKatex from "marked-katex-extension";
import { copyText } from "./clipboard.js";

export const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const markdown = new Marked({ gfm: true, breaks: false, renderer: { html: (token) => escapeHtml(token.text) } });
markdown.use(markedKatex({ throwOnError: false, nonStandard: true }));

// The language a fence named (```python), as highlight.js knows it, or its own word for it.
function fenceLanguage(code) {
  const named = [...code.classList].find((c) => c.startsWith("language-"));
  return named ? named.slice("language-".length) : null;
}

export function renderMarkdown(text) {
  const html = DOMPurify.sanitize(markdown.parse(text), { USE_PROFILES: { html: true, mathMl: true, svg: true } });
  const holder = document.createElement("div");
  holder.className = "markdown";
  holder.innerHTML = html;
  for (const code of holder.querySelectorAll("pre > code")) {
    const named = fenceLanguage(code);
    if (!named || hljs.getLanguage(named)) hljs.highlightElement(code); // a language it lacks stays plain
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "language";
    label.textContent = named || code.result?.language || "text";
    const copy = document.createElement("button");
    copy.className = "copy";
    copy.type = "button";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    copy.onclick = () => copyText(code.textContent, copy);
    head.append(label, copy);
    const pre = code.parentElement;
    const block = document.createElement("div");
    block.className = "code-block";
    pre.replaceWith(block);
    block.append(head, pre);
  }
  return holder;
}
