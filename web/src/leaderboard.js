// The Leaderboard page: every model (as it ran: quantization, adapter) against every task it was
// evaluated on, from `autan eval`'s results (GET /api/leaderboard), with its speed, its memory
// and `autan eval safety`'s figures, and a chart per task so a quantization's or a fine-tune's
// cost is seen at a glance. Pure DOM building: the data come in, nothing here calls the server.
import { formatBytes } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5f3dc4"];

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attributes, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// "smollm2 · Q4_1 + adapter": one model as it ran
export function modelName(entry) {
  return [entry.model, entry.quantization].filter(Boolean).join(" · ") + (entry.adapter ? ` + ${entry.adapter}` : "");
}

const isSafety = (column) => column.startsWith("safety/");
const isRating = (column) => column.startsWith("mt_bench"); // a judge's rating, 1-10

// "42.5 ±1.6" for a benchmark score, "3.1%" for a safety rate, "6.20 ±0.31" for an MT-Bench rating
export function formatScore(column, score) {
  if (!score) return "–";
  if (isSafety(column)) return `${(100 * score.value).toFixed(1)}%`;
  if (isRating(column)) {
    const err = score.stderr === null || score.stderr === undefined ? "" : ` ±${score.stderr.toFixed(2)}`;
    return `${score.value.toFixed(2)}${err}`;
  }
  const err = score.stderr === null || score.stderr === undefined ? "" : ` ±${(100 * score.stderr).toFixed(1)}`;
  return `${(100 * score.value).toFixed(1)}${err}`;
}

function table(board) {
  const t = element("table", "board");
  const head = t.createTHead().insertRow();
  for (const name of ["Model", ...board.columns, "Tokens/s", "Memory"]) {
    const th = element("th", "", name);
    th.scope = "col";
    head.append(th);
  }
  const body = t.createTBody();
  for (const entry of board.models) {
    const row = body.insertRow();
    const th = element("th", "", modelName(entry));
    th.scope = "row";
    if (entry.file_sha256) th.title = `file SHA256 ${entry.file_sha256}`;
    row.append(th);
    for (const column of board.columns) {
      const score = entry.scores[column];
      const cell = row.insertCell();
      cell.textContent = formatScore(column, score);
      if (score) cell.title = `n = ${score.n}, ${score.date}\n${score.command}`;
    }
    row.insertCell().textContent = entry.tokens_per_second ? entry.tokens_per_second.toFixed(0) : "–";
    row.insertCell().textContent = entry.memory_bytes ? formatBytes(entry.memory_bytes) : "–";
  }
  return t;
}

// One chart per column: a bar per model (the score, with its two-standard-error whisker).
export function chart(board, column) {
  const entries = board.models.filter((m) => m.scores[column]);
  const width = 360;
  const bar = 18;
  const left = 150;
  const height = entries.length * (bar + 6) + 30;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${column} by model` });
  root.append(svg("text", { x: 0, y: 12, class: "chart-title" }, column));
  const top = isRating(column) ? 10 : 1; // a rating's bar spans 0-10, a share's 0-1
  const scale = (v) => left + Math.max(0, Math.min(1, v / top)) * (width - left - 10);
  entries.forEach((entry, k) => {
    const score = entry.scores[column];
    const y = 22 + k * (bar + 6);
    const colour = COLOURS[board.models.indexOf(entry) % COLOURS.length];
    root.append(svg("text", { x: left - 6, y: y + bar - 5, "text-anchor": "end" }, modelName(entry)));
    const rect = svg("rect", { x: left, y, width: scale(score.value) - left, height: bar, fill: colour });
    rect.append(svg("title", {}, `${modelName(entry)}: ${formatScore(column, score)}`));
    root.append(rect);
    if (score.stderr) {
      const lo = scale(score.value - 2 * score.stderr);
      const hi = scale(score.value + 2 * score.stderr);
      root.append(svg("line", { x1: lo, x2: hi, y1: y + bar / 2, y2: y + bar / 2, class: "whisker" }));
    }
  });
  return root;
}

export function drawLeaderboard(board, root) {
  const parts = [element("h1", "", "Leaderboard")];
  if (!board.models.length) {
    const empty = element("p", "empty", "No results yet. Evaluate a model, then come back: ");
    empty.append(element("code", "", "autan eval hellaswag,piqa --model smollm2 --limit 500"));
    parts.push(empty);
    root.replaceChildren(...parts);
    return;
  }
  parts.push(
    element("p", "hint", "Scores in percent with their standard error; MT-Bench is its judge's rating, 1 to 10; safety figures are the share of prompts answered or refused."),
  );
  parts.push(table(board));
  const charts = element("div", "charts");
  for (const column of board.columns) charts.append(chart(board, column));
  parts.push(charts);
  root.replaceChildren(...parts);
}
