// A conversation's messages as the tree they are: each message answers its parent, an edit or a
// regeneration is a sibling, and the branch shown runs from the first message to the current leaf.
export class MessageTree {
  constructor(messages = [], leafId = null) {
    this.messages = new Map();
    this.kids = new Map(); // parent id (null for the first messages) -> children, oldest first
    this.leafId = leafId;
    for (const message of messages) this.#index(message);
  }

  #index(message) {
    this.messages.set(message.id, message);
    const siblings = this.kids.get(message.parent_id ?? null);
    if (siblings) siblings.push(message);
    else this.kids.set(message.parent_id ?? null, [message]);
  }

  // A message just stored: it becomes the leaf.
  add(message) {
    this.#index(message);
    this.leafId = message.id;
    return message;
  }

  get(id) {
    return this.messages.get(id);
  }

  children(parentId) {
    return this.kids.get(parentId ?? null) || [];
  }

  // From the first message to the current leaf.
  branch() {
    const path = [];
    for (let at = this.get(this.leafId); at; at = this.get(at.parent_id)) {
      path.push(at);
      if (path.length > this.messages.size) throw new Error("the conversation's messages form a cycle");
    }
    return path.reverse();
  }

  // Where a message stands among its versions: its index and how many there are.
  versions(message) {
    const siblings = this.children(message.parent_id);
    return { index: siblings.findIndex((m) => m.id === message.id), count: siblings.length };
  }

  // The newest path down from a message: where switching to its branch lands.
  deepestLeaf(id) {
    let at = id;
    for (let kids = this.children(at); kids.length; kids = this.children(at)) at = kids.at(-1).id;
    return at;
  }

  // The leaf of the version `step` away from `message` (-1 the one before), or null past either end.
  stepVersion(message, step) {
    const siblings = this.children(message.parent_id);
    const target = siblings[siblings.findIndex((m) => m.id === message.id) + step];
    return target ? this.deepestLeaf(target.id) : null;
  }
}
