// Titles for the sidebar: one at once from the first message, then a better one from the model,
// cleaned of what small models wrap it in ("Here's a possible title:", quotes, markdown) and
// refused when it is not a title at all.

const MAX_WORDS = 8;
const MAX_CHARS = 60;
const PLACEHOLDER_CHARS = 40;

// The ask for a title, as a chat completion's messages.
export function titleRequest(firstMessage) {
  const opening = firstMessage.length > 2000 ? firstMessage.slice(0, 2000) : firstMessage;
  return [
    {
      role: "user",
      content:
        "Write a short title (at most five words) for a chat that begins with the message below. " +
        `Reply with the title only.\n\nMessage: ${opening}`,
    },
  ];
}

// The first message's opening words, cut between words, until the model's title comes.
export function titleFromMessage(text) {
  const line = text.replace(/\s+/g, " ").trim();
  if (line.length <= PLACEHOLDER_CHARS) return line || "New chat";
  const cut = line.slice(0, PLACEHOLDER_CHARS + 1);
  const space = cut.lastIndexOf(" ");
  return `${(space > 0 ? cut.slice(0, space) : cut.slice(0, PLACEHOLDER_CHARS)).replace(/[\s,;:.-]+$/, "")}…`;
}

const PREAMBLE =
  /^(?:(?:sure|okay|ok|certainly|of course)[,.!]*\s*)?(?:(?:here(?:'s|’s| is| are)|a|an|one|the|my|some)\s+)*(?:(?:possible|suggested|short|concise|good|great|fitting|catchy|proposed|new)\s+)*titles?\b[^:\n"“«]*?(?:could be|would be|is|:|-|–|—)\s*/i;
const QUOTED = /["“”«»]([^"“”«»\n]{1,80})["“”«»]/;
const LIST_MARK = /^\s*(?:\d+[.)]|[-*•])\s+/;
const DANGLING = /\s+(?:a|an|the|of|and|or|to|for|with|in|on|at|by|from|vs\.?|&)$/i;
const NOT_A_TITLE = /^(?:i\b|i'm\b|sorry\b|as an\b|unfortunately\b|here(?:['’]s|\s+(?:is|are)\b))/i;

// The model's reply as a clean title, or null when it is no title. `cut`: the reply hit its
// token limit, so its last word may be a piece of one.
export function cleanTitle(reply, { cut = false } = {}) {
  const lines = reply.split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return null;
  let text = lines[0];
  if (PREAMBLE.test(text) || /:$/.test(text)) {
    const rest = text.replace(PREAMBLE, "").replace(/:$/, "").trim();
    const quoted = text.match(QUOTED);
    if (quoted) text = quoted[1];
    else if (rest && !/:$/.test(lines[0])) text = rest;
    else if (lines.length > 1) text = lines[1]; // "Here are some titles:" and a list under it
    else return null;
  }
  text = text
    .replace(LIST_MARK, "")
    .replace(/[*_`#"“”«»]+/g, "")
    .replace(/\s+/g, " ")
    .trim()
    .replace(/^(?:title\s*[:\-–—]\s*)+/i, "")
    .replace(/^['‘’\s]+|['‘’\s]+$/g, "");
  let words = text.split(" ").filter(Boolean);
  if (cut && words.length > 1) words = words.slice(0, -1);
  text = words.join(" ");
  for (let before = null; before !== text; ) {
    before = text;
    text = text.replace(/[\s.,;:!\-–—]+$/, "").replace(DANGLING, "");
  }
  if (!text || NOT_A_TITLE.test(text)) return null;
  if (text.split(" ").length > MAX_WORDS || text.length > MAX_CHARS) return null;
  return text;
}
