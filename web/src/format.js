// Numbers and moments as the app shows them.

// 134515008 -> "135M", 1543714304 -> "1.5B" (as model names and Ollama write them).
export function formatParameters(count) {
  if (!count) return "";
  for (const [unit, size] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
    if (count >= size) return `${round(count / size)}${unit}`;
  }
  return String(count);
}

// Bytes in decimal units, as disks and Ollama count them: 98 MB, 1.1 GB.
export function formatBytes(bytes) {
  if (!bytes) return "";
  for (const [unit, size] of [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
    if (bytes >= size) return `${round(bytes / size)} ${unit}`;
  }
  return `${bytes} B`;
}

// A context length in tokens: 8192 -> "8K", 131072 -> "128K", 1000 -> "1000".
export function formatContext(tokens) {
  if (!tokens) return "";
  return tokens % 1024 === 0 ? `${tokens / 1024}K` : String(tokens);
}

// Two significant figures below 10, whole numbers above: 1.5, 9.9, 98, 135.
function round(value) {
  return value < 10 ? String(Math.round(value * 10) / 10) : String(Math.round(value));
}

// A model card's facts in one line: "135M · Q4_1 · 98 MB · 8K context".
export function describeModel(card) {
  if (!card) return "";
  const parts = [
    card.parameters ? `${formatParameters(card.parameters)} parameters` : "",
    card.quantization || "",
    formatBytes(card.size_bytes),
    card.max_context_length ? `${formatContext(card.max_context_length)} context` : "",
  ];
  return parts.filter(Boolean).join(" · ");
}

// When a message was written: the time today, the date and time before.
export function formatMoment(iso, now = new Date()) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  const time = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (moment.toDateString() === now.toDateString()) return time;
  const date = moment.toLocaleDateString([], {
    day: "numeric",
    month: "short",
    ...(moment.getFullYear() === now.getFullYear() ? {} : { year: "numeric" }),
  });
  return `${date}, ${time}`;
}
