// The saver over many random schedules of saves and server replies: never two writes at once,
// the newest text wins, and the final write is the last one, awaited.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Saver } from "../src/saving.js";
import { random } from "./random.mjs";

const tick = () => new Promise((resolve) => setImmediate(resolve));

function fakeServer(rand) {
  const server = { open: [], written: [], concurrent: 0, most: 0 };
  server.write = (body) => {
    server.concurrent++;
    server.most = Math.max(server.most, server.concurrent);
    return new Promise((resolve, reject) => {
      server.open.push(() => {
        server.concurrent--;
        if (rand() < 0.2 && !body.final) reject(new Error("503"));
        else {
          server.written.push(body);
          resolve(body);
        }
      });
    });
  };
  server.answerOne = () => server.open.shift()?.();
  return server;
}

test("one write in flight, newest first, final last", async () => {
  const rand = random(7);
  for (let round = 0; round < 300; round++) {
    const server = fakeServer(rand);
    const saver = new Saver(server.write);
    let text = "";
    const saves = Math.floor(rand() * 20);
    for (let i = 0; i < saves; i++) {
      text += `w${i} `;
      saver.save({ content: text });
      if (rand() < 0.5) server.answerOne();
      await tick();
    }
    let finished = false;
    const done = saver.finish({ content: `${text}end`, final: true }).then((body) => {
      finished = true;
      return body;
    });
    while (!finished) {
      server.answerOne();
      await tick();
    }
    assert.deepEqual(await done, { content: `${text}end`, final: true });
    assert.equal(server.most <= 1, true, "two writes were in flight at once");
    assert.deepEqual(server.written.at(-1), { content: `${text}end`, final: true });
    const lengths = server.written.map((b) => b.content.length);
    assert.deepEqual(lengths, [...lengths].sort((a, b) => a - b), "an older text was written after a newer one");
    saver.save({ content: "after the end" });
    await tick();
    assert.equal(server.open.length, 0, "a save after finish was sent");
  }
});

test("a failed final write is reported; failed partial ones are not", async () => {
  const saver = new Saver(async (body) => {
    if (body.final) throw new Error("the disk is full");
  });
  saver.save({ content: "a" });
  await assert.rejects(saver.finish({ content: "ab", final: true }), /the disk is full/);
  const quiet = new Saver(async () => {
    throw new Error("503");
  });
  quiet.save({ content: "a" });
  await tick();
});
