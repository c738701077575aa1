"""The engine: requests in, token streams out, many at once over one paged KV cache.

    engine = Engine(model, tokenizer)
    stream = engine.add_request([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0))
    for delta in stream:          # drives engine.step() itself when used from one thread
        print(delta.text, end="")
    stream.completion.usage

Its core is token-only: `add_tokens` takes token ids and emits token ids, log-probabilities and
how each request finished (`autan.engine.request`). `add_request` wraps it for text: the input
processor (`input.py`: chat templates) before, the output processor (`output.py`:
detokenization, stop strings) after, the same for the CLI, the server and evaluation.

`add_request`, `add_tokens` and `abort` may be called from any thread; `step` runs one scheduled
forward pass and must be called from one thread at a time (AsyncEngine runs it in its own thread).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from autan.engine.blocks import ROOT_HASH, BlockPool
from autan.engine.constraint import GrammarConstraint
from autan.engine.distributed import Leader
from autan.engine.input import prompt_ids
from autan.engine.output import Completion, Delta, Event, TextOutput
from autan.engine.paged import Chunk, KVPool, PagedStep
from autan.engine.request import Request, TokenEvent
from autan.engine.sampling import SamplingParams
from autan.engine.scheduler import Scheduled, Scheduler
from autan.errors import ContextLengthError
from autan.model.lora import Adapter, attach
from autan.model.transformer import Transformer
from autan.tokenizer import Message, Tokenizer, Tool


@dataclass(frozen=True)
class EngineConfig:
    max_running: int = 32  # requests in the running batch at once
    max_batched_tokens: int = 256  # tokens per step: decode tokens plus prefill chunks
    block_size: int = 16  # positions per KV block
    kv_cache_bytes: int | None = None  # None: a quarter of available memory, at most what max_running needs
    prefix_caching: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.max_running >= 1, f"max_running={self.max_running} must be at least 1"),
            (self.max_batched_tokens >= 1, f"max_batched_tokens={self.max_batched_tokens} must be at least 1"),
            (self.block_size >= 1, f"block_size={self.block_size} must be at least 1"),
            (
                self.kv_cache_bytes is None or self.kv_cache_bytes > 0,
                f"kv_cache_bytes={self.kv_cache_bytes} must be positive",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class EngineStats:
    running: int
    waiting: int
    kv_blocks_used: int
    kv_blocks_free: int
    kv_block_size: int
    prefix_cache_hit_rate: float  # share of prompt tokens served from the cache
    preemptions: int
    computed_tokens: int  # tokens run through the model since start (prompts not served from cache, and decodes)
    generated_tokens: int
    generation_tokens_per_second: float  # over the last few seconds
    finished: dict[str, int]  # requests ended, by finish reason ("error" for those that failed)


class RequestStream:
    """Iterate for `Delta`s; `completion` is set when the request ends. Raises what ended it badly."""

    def __init__(self, engine: Engine, request_id: str):
        self.engine, self.id = engine, request_id
        self.events: deque[Event] = deque()
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[Delta]:
        while True:
            while not self.events:
                if not self.engine.step() and not self.events:
                    raise RuntimeError(f"request {self.id} has not ended, but the engine has nothing to run")
            event = self.events.popleft()
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, Completion):
                self.completion = event
                return
            yield event

    def abort(self) -> None:
        self.engine.abort(self.id)


class Engine:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, config: EngineConfig | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.config = config = config or EngineConfig()
        mc = model.config
        per_block = KVPool.bytes_per_token(model.cache_config, model.dtype) * config.block_size
        budget = config.kv_cache_bytes or _default_kv_bytes(model, config)
        n_blocks = budget // per_block
        window = mc.sliding_window
        # One request alone must always fit, so nothing can stall: that bounds the usable context.
        capacity = n_blocks * config.block_size
        if window is not None and capacity >= window + config.max_batched_tokens + 2 * config.block_size:
            self.max_seq_len = mc.max_seq_len  # released blocks make room: any length runs
        else:
            self.max_seq_len = min(mc.max_seq_len, capacity)
        if n_blocks < 2:
            raise ValueError(
                f"kv_cache_bytes={budget} holds {n_blocks} blocks of {config.block_size} tokens "
                f"({per_block} bytes each); give at least {2 * per_block}"
            )
        self.pool = BlockPool(n_blocks, config.block_size)
        self.kv = KVPool(model.cache_config, n_blocks, config.block_size, model.device, model.dtype)
        # a shard of a model split over ranks: the other ranks run each step too (`distributed`)
        self.leader = Leader(self.kv, n_blocks) if model.shard is not None else None
        self.scheduler = Scheduler(
            self.pool,
            max_running=config.max_running,
            max_batched_tokens=config.max_batched_tokens,
            sliding_window=window,
            prefix_caching=config.prefix_caching,
        )
        self.adapters: dict[str, tuple[int, bytes]] = {}  # name -> (slot, the root of its blocks' names)
        self._model_lock = threading.Lock()  # held by a step while it runs the model
        self._requests: dict[str, Request] = {}
        self._inbox: deque[Request] = deque()
        self._aborts: deque[str] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._ids_in_use: set[str] = set()
        self._computed = self._generated = 0
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens generated in that step)
        self._finished: Counter[str] = Counter()
        self.wakeup = threading.Event()  # set when work arrives; AsyncEngine's thread waits on it

    def add_request(
        self,
        prompt: Sequence[int] | Sequence[Message],
        params: SamplingParams | None = None,
        *,
        tools: Sequence[Tool] | None = None,
        request_id: str | None = None,
        emit: Callable[[Event], None] | None = None,
        constraint: GrammarConstraint | None = None,
        adapter: str | None = None,
    ) -> RequestStream:
        """Queue a prompt (token ids, or chat messages to encode with the tokenizer's chat format).

        Events (text deltas, then the completion or an exception) go to the returned stream, or
        to `emit` when given (called from the thread that runs `step`). `adapter` names a LoRA
        adapter loaded with `add_adapter`.
        """
        params = params or SamplingParams()
        ids = prompt_ids(self.tokenizer, prompt, tools, self.model.config.vocab_size)
        stream = RequestStream(self, request_id or f"req-{next(self._ids)}")
        text = TextOutput(self.tokenizer, params.stop, ids[-4:], emit or stream.events.append)
        self.add_tokens(ids, params, text, request_id=stream.id, constraint=constraint, adapter=adapter)
        return stream

    def add_tokens(
        self,
        ids: list[int],
        params: SamplingParams,
        emit: Callable[[TokenEvent], bool | None],
        *,
        request_id: str | None = None,
        constraint: GrammarConstraint | None = None,
        adapter: str | None = None,
    ) -> str:
        """Queue a prompt of token ids (in the vocabulary) for the core: its token events go to
        `emit` (from the thread that runs `step`), which answers True to end the request there
        (a stop string); `params.stop` is not read here. Returns the request's id."""
        slot, root = self._adapter_slot(adapter)
        context = self.max_seq_len
        if len(ids) >= context:
            limit = "the model's context" if context == self.model.config.max_seq_len else "what the KV cache holds"
            raise ContextLengthError(f"prompt has {len(ids)} tokens, but {limit} is {context} tokens")
        request_id = request_id or f"req-{next(self._ids)}"
        budget = context - len(ids)
        request = Request(
            id=request_id,
            prompt=ids,
            params=params,
            limit=min(budget if params.max_tokens is None else params.max_tokens, budget),
            limit_reason="length" if params.max_tokens is not None and params.max_tokens <= budget else "model_length",
            vocab_size=self.model.config.vocab_size,
            emit=emit,
            constraint=constraint,
            adapter=slot,
            root=root,
        )
        with self._lock:
            if request_id in self._ids_in_use:
                raise ValueError(f"request id '{request_id}' is already in use")
            self._ids_in_use.add(request_id)
            self._inbox.append(request)
        self.wakeup.set()
        return request_id

    def add_adapter(self, name: str, adapter: Adapter) -> None:
        """Load a LoRA adapter under `name`, for requests that ask for it; its blocks in the prefix
        cache are its own (keyed by the adapter's name and weights)."""
        if not name or name in self.adapters:
            raise ValueError(f"adapter name {name!r} is empty or already loaded")
        if self.model.shard is not None:
            raise ValueError(f"adapter {name!r}: LoRA adapters are not served on a model split over ranks (yet)")
        slot = max(self.adapters.values(), default=(0, b""))[0] + 1
        with self._model_lock:  # not while a step runs the model (an adapter may come while serving)
            attach(self.model, adapter, slot)
        digest = hashlib.blake2b(name.encode(), digest_size=16)
        for module in sorted(adapter.maps):
            a, b, scale = adapter.maps[module]
            digest.update(
                module.encode() + a.float().numpy().tobytes() + b.float().numpy().tobytes() + str(scale).encode()
            )
        self.adapters[name] = (slot, digest.digest())

    def _adapter_slot(self, adapter: str | None) -> tuple[int, bytes]:
        if adapter is None:
            return 0, ROOT_HASH
        if adapter not in self.adapters:
            known = ", ".join(sorted(self.adapters)) or "none is loaded"
            raise ValueError(f"adapter '{adapter}' is not loaded (loaded: {known})")
        return self.adapters[adapter]

    def abort(self, request_id: str) -> None:
        """Stop a request; its blocks are freed at once (at the next step) and its stream ends with "abort"."""
        with self._lock:
            self._aborts.append(request_id)
        self.wakeup.set()

    @property
    def has_work(self) -> bool:
        return bool(self._requests or self._inbox or self._aborts)

    def step(self) -> bool:
        """Run one scheduled forward pass. False when there was nothing to do."""
        self._take_inbox()
        plan = self.scheduler.schedule()
        if not plan:
            return False
        chunks = []
        for s in plan:
            r = s.request
            chunks.append(Chunk(r.tokens[r.n_computed : r.n_computed + s.n_tokens], r.n_computed, r.table))
        step = PagedStep(self.kv, chunks, self.model.config.sliding_window, self.model.device)
        sampling = [i for i, s in enumerate(plan) if s.samples]
        rows = [step.last_rows[sampling]]
        scored = []  # (request, positions, their first row in `logits`)
        at = len(sampling)
        for i, s in enumerate(plan):
            positions = s.request.scored_positions(s.n_tokens)
            if positions:
                first_row = int(step.last_rows[i]) - s.n_tokens + 1 + positions.start - s.request.n_computed
                rows.append(torch.arange(first_row, first_row + len(positions)))
                scored.append((s.request, positions, at))
                at += len(positions)
        adapters = None  # the LoRA slot of each token, where any request has an adapter
        if any(s.request.adapter for s in plan):
            adapters = torch.tensor([s.request.adapter for s in plan for _ in range(s.n_tokens)])
        try:
            with torch.inference_mode(), self._model_lock:
                if self.leader is not None:
                    self.leader.step(chunks, torch.cat(rows))
                logits = self.model.run(step.tokens, step, torch.cat(rows), adapters).float().cpu()
        except Exception as e:  # the step's requests end with the error; the engine goes on
            for s in plan:
                self._fail(s.request, e)
            return True
        self._computed += len(step.tokens)
        for request, positions, first in scored:
            request.score_prompt(positions, logits[first : first + len(positions)])
        for s in plan:  # requests mid-prompt: only their cache advanced
            if not s.samples:
                self._advance(s)
        for row, i in enumerate(sampling):
            # Advanced one at a time, just before sampling: if this loop is interrupted (Ctrl-C, a
            # failing callback), the requests not reached recompute the same chunk next step.
            request = plan[i].request
            self._advance(plan[i])
            try:
                request.accept(logits[row], self.tokenizer.eos_ids)
            except Exception as e:  # its consumer failed: end it alone
                self._fail(request, e)
                continue
            if request.finish_reason is not None:
                self._forget(request)
        made = sum(1 for i in sampling if plan[i].request.limit > 0)  # a request that only scores makes none
        self._generated += made
        now = time.perf_counter()
        self._recent.append((now, made))
        while self._recent and now - self._recent[0][0] > 5:
            self._recent.popleft()
        return True

    def fail_all(self, error: BaseException) -> None:
        """End every request with `error` (the engine itself failed) and free their blocks."""
        self._take_inbox()
        for request in list(self._requests.values()):
            self._fail(request, error)

    def _advance(self, scheduled: Scheduled) -> None:
        scheduled.request.n_computed += scheduled.n_tokens
        self.scheduler.computed(scheduled.request)

    def _fail(self, request: Request, error: BaseException) -> None:
        with contextlib.suppress(Exception):
            request.emit(error)
        self._forget(request)

    def run_until_idle(self) -> None:
        while self.has_work:
            self.step()

    def stats(self) -> EngineStats:
        s = self.scheduler
        span = self._recent[-1][0] - self._recent[0][0] if len(self._recent) > 1 else 0.0
        return EngineStats(
            running=len(s.running),
            waiting=len(s.waiting) + len(self._inbox),
            kv_blocks_used=self.pool.n_used,
            kv_blocks_free=self.pool.n_free,
            kv_block_size=self.pool.block_size,
            prefix_cache_hit_rate=s.prompt_tokens_hit / s.prompt_tokens_looked_up if s.prompt_tokens_looked_up else 0.0,
            preemptions=s.preemptions,
            computed_tokens=self._computed,
            generated_tokens=self._generated,
            generation_tokens_per_second=sum(n for _, n in list(self._recent)[1:]) / span if span else 0.0,
            finished=dict(self._finished),
        )

    def _take_inbox(self) -> None:
        with self._lock:
            new, self._inbox = list(self._inbox), deque()
            aborts, self._aborts = list(self._aborts), deque()
        for request in new:
            self._requests[request.id] = request
            self.scheduler.waiting.append(request)
        for request_id in aborts:
            request = self._requests.get(request_id)
            if request is not None:
                with contextlib.suppress(Exception):
                    request.finish("abort")
                self._forget(request)

    def _forget(self, request: Request) -> None:
        self._finished[request.finish_reason or "error"] += 1
        self.scheduler.finish(request)
        del self._requests[request.id]
        with self._lock:
            self._ids_in_use.discard(request.id)


def _default_kv_bytes(model: Transformer, config: EngineConfig) -> int:
    """A quarter of the memory still available (half of a GPU's free memory), capped at what
    `max_running` requests of full context would need."""
    mc = model.config
    window = mc.sliding_window
    tokens = mc.max_seq_len if window is None else window + config.max_batched_tokens + 2 * config.block_size
    wanted = config.max_running * (tokens + config.block_size) * KVPool.bytes_per_token(model.cache_config, model.dtype)
    if model.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(model.device)
        return min(wanted, free // 2)
    return min(wanted, _available_ram() // 4)


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
