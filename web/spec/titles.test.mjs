// Titles as small models write them (the replies below are the shapes SmolLM2 and Qwen answer
// with), and properties of every title over random replies and messages.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cleanTitle, titleFromMessage } from "../src/titles.js";
import { random } from "./random.mjs";

const REPLIES = [
  ['Here\'s a possible title: "Baking Bread at Home"', "Baking Bread at Home"],
  ["Here is a possible title for the chat: Baking Bread at Home.", "Baking Bread at Home"],
  ["Sure! Here's a title: **The Capital of France**", "The Capital of France"],
  ["Title: Dragons Who Bake", "Dragons Who Bake"],
  ["**Title:** Dragons Who Bake", "Dragons Who Bake"],
  ['"Rome, Italy\'s Capital"', "Rome, Italy's Capital"],
  ["“Weather Versus Climate”", "Weather Versus Climate"],
  ["A possible title could be \"Palindromes in Python\"", "Palindromes in Python"],
  ["Here are some titles:\n1. Palindromes in Python\n2. Word Checks", "Palindromes in Python"],
  ["# Toulouse in One Day", "Toulouse in One Day"],
  ["Paris: The City of Light", "Paris: The City of Light"],
  ["Why Is the Sky Blue?", "Why Is the Sky Blue?"],
  ["I'm sorry, but I can't help with that.", null],
  ["Sure! Here's a possible title:", null],
  ["", null],
  ["The Capital of France is Paris and it has been the capital since the tenth century", null],
];

test("the replies of small models make clean titles", () => {
  for (const [reply, title] of REPLIES) assert.equal(cleanTitle(reply), title, reply);
});

test("a reply cut by its token limit loses its last, maybe partial, word and what dangles", () => {
  assert.equal(cleanTitle("Exploring the History of Fra", { cut: true }), "Exploring the History");
  assert.equal(cleanTitle('Here\'s a possible title: "Baking Bread at Ho', { cut: true }), "Baking Bread");
});

const PIECES = ["Here's", "a", "possible", "title:", '"', "Bread", "of", "the", "and", "Paris", "**", "—", "Title:", "\n", "?", ",", "Café", "🍞"];

test("whatever the reply, a title is short, trimmed and ends on a whole word", () => {
  const rand = random(5);
  for (let round = 0; round < 3000; round++) {
    const words = Array.from({ length: Math.floor(rand() * 14) }, () => PIECES[Math.floor(rand() * PIECES.length)]);
    const title = cleanTitle(words.join(rand() < 0.8 ? " " : ""), { cut: rand() < 0.3 });
    if (title === null) continue;
    assert.ok(title.length > 0 && title.length <= 60 && title.split(" ").length <= 8, title);
    assert.equal(title, title.trim());
    assert.doesNotMatch(title, /\s(of|the|and|a)$/i, title);
    assert.doesNotMatch(title, /^(here's|title:)/i, title);
    assert.doesNotMatch(title, /[*"\n]/, title);
  }
});

test("the placeholder title is the message's opening words, never a piece of one", () => {
  const rand = random(9);
  const words = ["the", "capital", "of", "France", "is", "extraordinarily", "Paris,", "été", "a"];
  for (let round = 0; round < 2000; round++) {
    const message = Array.from({ length: 1 + Math.floor(rand() * 20) }, () => words[Math.floor(rand() * words.length)]).join(rand() < 0.8 ? " " : "\n  ");
    const title = titleFromMessage(message);
    const line = message.replace(/\s+/g, " ").trim();
    if (!title.endsWith("…")) {
      assert.equal(title, line);
      continue;
    }
    const kept = title.slice(0, -1);
    assert.ok(kept.length <= 40 && line.startsWith(kept), title);
    assert.match(line.slice(kept.length), /^[\s,;:.-]/, `cut inside a word: ${title}`);
  }
  assert.equal(titleFromMessage("   "), "New chat");
});
