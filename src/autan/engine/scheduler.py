"""Which requests run in the next step, and how many of their tokens: continuous batching.

Every step has a token budget (`max_batched_tokens`), spent in this order:

1. Every running request that is decoding takes its one token, oldest first: a stream never
   pauses behind someone else's prompt.
2. Running requests still reading their prompt take chunks of it, oldest first; while a request
   waits to be admitted, they leave it room: the smaller of half the budget and its whole prompt.
3. Waiting requests are admitted, first come first served, while budget, blocks and the running
   limit allow, each with a first chunk of its prompt.

So a short request that arrives while a long prompt is being read is admitted at the next step
and has its prompt read in that step (its first token comes from it), the long prompt goes on
beside it, and a long prompt alone still gets the whole budget every step.

When the pool runs out of blocks, the newest running request is preempted: its blocks are freed
and it goes back to the front of the queue, to recompute its tokens later (mostly from the
prefix cache, which kept them). With a sliding window, blocks that fall wholly out of the window
are released as a request runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from autan.engine.blocks import BlockPool, block_hashes
from autan.engine.request import Request


@dataclass
class Scheduled:
    request: Request
    n_tokens: int

    @property
    def samples(self) -> bool:
        """Whether this step's chunk ends the request's pending tokens, so a token is sampled."""
        return self.n_tokens == self.request.n_pending


class Scheduler:
    def __init__(
        self,
        pool: BlockPool,
        *,
        max_running: int,
        max_batched_tokens: int,
        sliding_window: int | None,
        prefix_caching: bool,
    ):
        self.pool = pool
        self.max_running, self.max_batched_tokens = max_running, max_batched_tokens
        self.sliding_window, self.prefix_caching = sliding_window, prefix_caching
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.preemptions = 0
        self.prompt_tokens_looked_up = self.prompt_tokens_hit = 0

    def schedule(self) -> list[Scheduled]:
        budget, plan = self.max_batched_tokens, {}  # request id -> its share of the step
        for reading in (False, True):  # decoding requests first, then prompts being read
            for request in list(self.running):
                if request not in self.running or (request.n_pending > 1) != reading or budget <= 0:
                    continue
                cap = budget - self._room_for_arrival(budget) if reading else budget
                n = min(request.n_pending, cap)
                if n <= 0:
                    continue
                while not self._reserve(request, n):
                    victim = self.running[-1]  # the newest gives way
                    if id(victim) in plan:
                        budget += plan.pop(id(victim)).n_tokens
                    self._preempt(victim)
                    if victim is request:
                        break
                else:
                    plan[id(request)] = Scheduled(request, n)
                    budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_running:
            request = self.waiting[0]
            if not request.table:
                self._reuse_prefix(request)
            n = min(request.n_pending, budget)
            if not self._reserve(request, n):
                self._free(request)  # its prefix blocks go back too; it waits for running ones to finish
                break
            self.waiting.popleft()
            self.running.append(request)
            if request.cached_tokens is None:  # first admission, not a return after preemption
                request.cached_tokens = request.n_computed
                self.prompt_tokens_looked_up += len(request.prompt)
                self.prompt_tokens_hit += request.n_computed
            plan[id(request)] = Scheduled(request, n)
            budget -= n
        return list(plan.values())

    def _room_for_arrival(self, budget: int) -> int:
        """Tokens the prompts being read leave for the first waiting request, if it can be admitted."""
        if not self.waiting or len(self.running) >= self.max_running:
            return 0
        return min(budget // 2, len(self.waiting[0].tokens))

    def computed(self, request: Request) -> None:
        """Name the request's newly completed blocks so later requests can share them."""
        bs = self.pool.block_size
        full = request.n_computed // bs
        if not self.prefix_caching or full <= len(request.block_names):
            return
        parent = request.block_names[-1] if request.block_names else request.root
        start = len(request.block_names)
        names = block_hashes(request.tokens[: full * bs], bs, parent, start)
        for b, name in enumerate(names, start):
            if request.table[b] is not None:
                self.pool.name(request.table[b], name)
        request.block_names.extend(names)

    def finish(self, request: Request) -> None:
        """Forget a finished or aborted request and release its blocks."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self._free(request)

    def _reserve(self, request: Request, n_tokens: int) -> bool:
        """Blocks for the request's next `n_tokens`, after releasing those out of its window."""
        bs = self.pool.block_size
        if self.sliding_window is not None:
            dead = (request.n_computed - self.sliding_window + 1) // bs  # blocks no later query can see
            for b in range(min(dead, len(request.table))):
                if request.table[b] is not None:
                    self.pool.release(request.table[b])
                    request.table[b] = None
        needed = -(-(request.n_computed + n_tokens) // bs)
        while len(request.table) < needed:
            block = self.pool.allocate(after=request.table[-1] if request.table else None)
            if block is None:
                return False
            request.table.append(block)
        return True

    def _reuse_prefix(self, request: Request) -> None:
        if not self.prefix_caching:
            return
        tokens = request.tokens
        # Full blocks only, and never the last token: its logits are needed, and its block is written.
        # Nor a position whose logits score the prompt.
        end = len(tokens) - 1
        if request.params.prompt_logprobs is not None:
            end = min(end, request.params.prompt_logprobs - 1)
        names = block_hashes(tokens[:end], self.pool.block_size, request.root)
        for name in names:
            block = self.pool.lookup(name)
            if block is None:
                break
            request.table.append(block)
            request.block_names.append(name)
        request.n_computed = len(request.table) * self.pool.block_size

    def _preempt(self, request: Request) -> None:
        self.running.remove(request)
        self._free(request)
        self.waiting.appendleft(request)
        self.preemptions += 1

    def _free(self, request: Request) -> None:
        # Last block first: the free list evicts the least recently freed, so a prefix's first
        # blocks, which every reuse needs, stay cached longest.
        for block in reversed(request.table):
            if block is not None:
                self.pool.release(block)
        request.table.clear()
        request.block_names.clear()
        request.n_computed = 0
