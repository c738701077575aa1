import assert from "node:assert/strict";
import { test } from "node:test";
import { describeModel, formatBytes, formatContext, formatMoment, formatParameters } from "../src/format.js";

test("sizes as model names and disks write them", () => {
  assert.equal(formatParameters(134515008), "135M"); // SmolLM2-135M
  assert.equal(formatParameters(1543714304), "1.5B"); // Qwen2.5-1.5B
  assert.equal(formatParameters(7241732096), "7.2B"); // Mistral 7B
  assert.equal(formatParameters(46702792704), "47B"); // Mixtral 8x7B
  assert.equal(formatBytes(98345952), "98 MB");
  assert.equal(formatBytes(1117320768), "1.1 GB");
  assert.equal(formatContext(8192), "8K");
  assert.equal(formatContext(131072), "128K");
  assert.equal(formatContext(1000), "1000");
  const card = { id: "m", parameters: 134515008, quantization: "Q4_1", size_bytes: 98345952, max_context_length: 8192 };
  assert.equal(describeModel(card), "135M parameters · Q4_1 · 98 MB · 8K context");
  assert.equal(describeModel({ id: "bare" }), "");
});

test("a moment today is its time; another day's has its date", () => {
  const now = new Date(2026, 11, 1, 15, 30);
  assert.doesNotMatch(formatMoment(new Date(2026, 11, 1, 9, 5).toISOString(), now), /Dec|2026/);
  assert.match(formatMoment(new Date(2026, 10, 3, 9, 5).toISOString(), now), /3/);
  assert.match(formatMoment(new Date(2025, 10, 3, 9, 5).toISOString(), now), /2025/);
  assert.equal(formatMoment("not a date", now), "");
});
