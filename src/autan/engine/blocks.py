"""The KV cache's block bookkeeping: fixed-size blocks, reference counts, and a prefix cache.

A block holds the keys and values of `block_size` consecutive positions of one sequence. A full
block is named by a hash of its tokens chained with the hash of the block before it, so two
sequences that start with the same tokens name their first blocks alike and can share them
(vLLM's automatic prefix caching). A block nobody references goes to the free list but keeps
its contents and its name: it is reused by name until allocation needs it for something new,
least recently freed first.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

ROOT_HASH = b""
GAP, SEARCH = 8, 64  # room left after another sequence's last block; how far into the free list to look


def block_hashes(tokens: Sequence[int], block_size: int, parent: bytes = ROOT_HASH, start: int = 0) -> list[bytes]:
    """Chained names of the full blocks of `tokens`, starting at block `start` whose parent is `parent`.

    A cryptographic hash, so nobody can craft a prompt whose blocks collide with another user's.
    """
    hashes = []
    for i in range(start * block_size, len(tokens) - block_size + 1, block_size):
        parent = hashlib.blake2b(parent + array("q", tokens[i : i + block_size]).tobytes(), digest_size=16).digest()
        hashes.append(parent)
    return hashes


class BlockPool:
    def __init__(self, n_blocks: int, block_size: int):
        if n_blocks < 1:
            raise ValueError(f"the KV cache needs at least one block, got {n_blocks}")
        self.n_blocks, self.block_size = n_blocks, block_size
        self.ref_counts = [0] * n_blocks
        self.names: list[bytes | None] = [None] * n_blocks  # the hash a full block is known by
        self.by_name: dict[bytes, int] = {}
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(n_blocks))  # oldest first
        self.lookups = self.hits = 0  # prefix-cache counters, in blocks

    @property
    def n_free(self) -> int:
        return len(self.free)

    @property
    def n_used(self) -> int:
        return self.n_blocks - len(self.free)

    def allocate(self, after: int | None = None) -> int | None:
        """A block with one reference, or None when every block is in use.

        The block right `after` the given one when it is free and holds no cached prefix: a
        sequence whose blocks are adjacent is attended in place, without gathering its keys.
        """
        if not self.free:
            return None
        block = self._adjacent(after)
        if block is None:
            block, _ = self.free.popitem(last=False)
        else:
            del self.free[block]
        name = self.names[block]
        if name is not None:  # its old contents are about to be overwritten
            del self.by_name[name]
            self.names[block] = None
        self.ref_counts[block] = 1
        return block

    def _adjacent(self, after: int | None) -> int | None:
        """The block that keeps a sequence contiguous: `after + 1` if it is free and unnamed.

        Otherwise (the sequence starts, or a neighbour took that block) one of the oldest free
        unnamed blocks that has GAP free blocks before it, so that whoever holds the block before the
        gap, and probably wants the next one too, keeps room to grow; None if no such block is
        near the front of the free list.
        """
        if after is not None and after + 1 < self.n_blocks and after + 1 in self.free and self.names[after + 1] is None:
            return after + 1
        for n, block in enumerate(self.free):
            if n == SEARCH:
                break
            if self.names[block] is None and all(b in self.free for b in range(max(0, block - GAP), block)):
                return block  # (never a cached prefix block: those go in least-recently-freed order)
        return None

    def lookup(self, name: bytes) -> int | None:
        """The cached block with this name, now referenced once more; None if it is not cached."""
        self.lookups += 1
        block = self.by_name.get(name)
        if block is None:
            return None
        self.hits += 1
        if self.ref_counts[block] == 0:
            del self.free[block]
        self.ref_counts[block] += 1
        return block

    def name(self, block: int, name: bytes) -> None:
        """Record that a full block holds the tokens `name` stands for, so others can reuse it."""
        if self.names[block] is None and name not in self.by_name:
            self.names[block] = name
            self.by_name[name] = block

    def release(self, block: int) -> None:
        count = self.ref_counts[block]
        assert count > 0, f"block {block} released more often than it was taken"
        self.ref_counts[block] = count - 1
        if count == 1:
            self.free[block] = None
