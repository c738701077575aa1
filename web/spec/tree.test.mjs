// The message tree against a brute-force reading of the same messages, over many random trees.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MessageTree } from "../src/tree.js";
import { random } from "./random.mjs";

function randomConversation(rand) {
  const messages = [];
  const n = 1 + Math.floor(rand() * 30);
  for (let i = 0; i < n; i++) {
    const parent = i === 0 || rand() < 0.1 ? null : messages[Math.floor(rand() * i)].id;
    messages.push({ id: `m${i}`, parent_id: parent, role: i % 2 ? "assistant" : "user", content: `text ${i}` });
  }
  return messages;
}

const kidsOf = (messages, id) => messages.filter((m) => m.parent_id === id);

test("branch, versions, deepest leaf and stepping agree with the messages themselves", () => {
  const rand = random(1);
  for (let round = 0; round < 500; round++) {
    const messages = randomConversation(rand);
    const leaf = messages[Math.floor(rand() * messages.length)];
    const tree = new MessageTree(messages, leaf.id);

    const path = tree.branch();
    assert.equal(path.at(-1).id, leaf.id);
    assert.equal(path[0].parent_id, null);
    for (let i = 1; i < path.length; i++) assert.equal(path[i].parent_id, path[i - 1].id);

    for (const m of messages) {
      const siblings = kidsOf(messages, m.parent_id);
      assert.deepEqual(tree.versions(m), { index: siblings.indexOf(m), count: siblings.length });
      const deepest = tree.deepestLeaf(m.id);
      assert.equal(kidsOf(messages, deepest).length, 0);
      let at = m.id; // the newest child at every step
      while (kidsOf(messages, at).length) at = kidsOf(messages, at).at(-1).id;
      assert.equal(deepest, at);
      for (const step of [-1, 1]) {
        const target = siblings[siblings.indexOf(m) + step];
        assert.equal(tree.stepVersion(m, step), target ? tree.deepestLeaf(target.id) : null);
      }
    }
  }
});

test("an added message becomes the leaf and a version of its siblings", () => {
  const tree = new MessageTree([{ id: "a", parent_id: null }, { id: "b", parent_id: "a" }], "b");
  tree.add({ id: "c", parent_id: "a" });
  assert.equal(tree.leafId, "c");
  assert.deepEqual(tree.branch().map((m) => m.id), ["a", "c"]);
  assert.deepEqual(tree.versions(tree.get("c")), { index: 1, count: 2 });
  assert.equal(tree.stepVersion(tree.get("c"), -1), "b");
});

test("an empty conversation has an empty branch; a cycle is refused, not looped on", () => {
  assert.deepEqual(new MessageTree().branch(), []);
  const cycle = new MessageTree([{ id: "a", parent_id: "b" }, { id: "b", parent_id: "a" }], "a");
  assert.throws(() => cycle.branch(), /cycle/);
});
