// The streaming reader against the bytes a server sends, cut into pieces at random places
// (inside a line, inside a multi-byte character, between the CR and LF of a line end).
import assert from "node:assert/strict";
import { test } from "node:test";
import { chunks } from "../src/api.js";
import { random } from "./random.mjs";

function streamOf(bytes, cuts) {
  const pieces = [];
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    pieces.push(bytes.slice(at, cut));
    at = cut;
  }
  pieces.push(bytes.slice(at));
  return new ReadableStream({
    pull(controller) {
      if (pieces.length) controller.enqueue(pieces.shift());
      else controller.close();
    },
  });
}

async function read(stream) {
  const out = [];
  for await (const chunk of chunks(stream)) out.push(chunk);
  return out;
}

const WORDS = ["Paris", " est", " la", " capitale", " — ", "été", " 🌍", "\n", " \"quoted\"", "data: not an event"];

test("every chunk comes through whole, however the bytes are cut", async () => {
  const rand = random(3);
  for (let round = 0; round < 300; round++) {
    const sent = [];
    let text = ": a comment first\r\n\r\n";
    const newline = rand() < 0.5 ? "\n" : "\r\n";
    for (let i = 0; i < 1 + Math.floor(rand() * 12); i++) {
      const chunk = { object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: WORDS[Math.floor(rand() * WORDS.length)] } }] };
      sent.push(chunk);
      text += `data: ${JSON.stringify(chunk)}${newline}${newline}`;
      if (rand() < 0.2) text += `: keep-alive${newline}${newline}`;
    }
    text += `data: [DONE]${newline}${newline}data: {"after": "done"}${newline}${newline}`;
    const bytes = new TextEncoder().encode(text);
    const cuts = Array.from({ length: Math.floor(rand() * 8) }, () => Math.floor(rand() * bytes.length));
    assert.deepEqual(await read(streamOf(bytes, cuts)), sent);
  }
});

test("an error event is thrown with the server's message", async () => {
  const text = 'data: {"object":"chat.completion.chunk","choices":[]}\n\ndata: {"object":"error","message":"the model stopped","code":"internal"}\n\n';
  const stream = streamOf(new TextEncoder().encode(text), []);
  const seen = [];
  await assert.rejects(async () => {
    for await (const chunk of chunks(stream)) seen.push(chunk);
  }, /the model stopped/);
  assert.equal(seen.length, 1);
});

test("a stream that ends without [DONE] ends the chunks", async () => {
  const text = 'data: {"object":"chat.completion.chunk","choices":[]}\n\n';
  assert.equal((await read(streamOf(new TextEncoder().encode(text), [5]))).length, 1);
});
