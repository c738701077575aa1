// Saving a message while it grows: at most one write in flight. A save made while one is in
// flight waits, and a newer one replaces it (only the newest text matters). `finish` writes the
// final state after every write before it has settled, so a partial save can never land after
// it, and resolves (or throws) with that final write.
export class Saver {
  constructor(write) {
    this.write = write;
    this.pending = null;
    this.inFlight = null;
    this.finished = false;
  }

  // A partial save. Its failure is not reported: the next save, or the final one, carries it.
  save(body) {
    if (this.finished) return;
    this.pending = body;
    this.inFlight ??= this.#drain();
  }

  async #drain() {
    try {
      while (this.pending) {
        const body = this.pending;
        this.pending = null;
        await this.write(body).catch(() => {});
      }
    } finally {
      this.inFlight = null;
    }
  }

  async finish(body) {
    this.finished = true;
    this.pending = null; // the final body supersedes it
    await this.inFlight;
    return this.write(body);
  }
}
