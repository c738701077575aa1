"""Log-likelihoods of continuations, as lm-evaluation-harness computes them, in process or
through a server.

A request is (context, continuation). As in the harness, the context's trailing spaces move to
the continuation, the continuation's tokens are those of `context + continuation` past the
context's own tokens (so a token spanning the boundary is scored as the whole text has it), no
BOS is added, and a text longer than the context is cut from the left. The score is the sum of
the continuation tokens' log-probabilities.

- `EngineScorer`: on the engine. A document's choices share their context: its first choice is
  scored alone, then the others, which find the context's KV blocks in the prefix cache. Many
  documents are in flight at once, so every step is a full batch.
- `HTTPScorer`: through `/v1/completions` with `echo`, `logprobs` and `max_tokens: 1` (autan
  serve, vLLM, llama-server, a hosted endpoint). `autan serve` scores every prompt token of such a
  request, so there the prefix cache does not help. It tokenizes through the server's `/tokenize`
  where it has one, so the tokens scored are those in process; where it has none, the text goes
  as is and the continuation is told by each token's `text_offset`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from autan.engine.engine import Engine
from autan.engine.output import Completion
from autan.engine.sampling import SamplingParams
from autan.errors import AutanError
from autan.eval.tasks import Doc, Generation


@dataclass(frozen=True)
class Chat:
    """A conversation to answer: its messages (the last a user's), and how to sample the answer."""

    messages: tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 1024
    seed: int = 0


def split_spaces(context: str, continuation: str) -> tuple[str, str]:
    """The context's trailing whitespace moved to the continuation (the harness's `_encode_pair`)."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def encode_pair(
    encode: Callable[[str], list[int]], context: str, continuation: str, prefix: int
) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as the harness makes them; an empty context is the
    `prefix` token alone (the harness uses the end-of-text token)."""
    context, continuation = split_spaces(context, continuation)
    if not context:
        return [prefix], encode(continuation)
    whole = encode(context + continuation)
    ids = encode(context)
    return ids, whole[len(ids) :]


def fit(context: list[int], continuation: list[int], limit: int) -> tuple[list[int], int]:
    """The prompt of at most `limit` tokens (cut from the left, as the harness does) and where
    its continuation starts."""
    if len(continuation) >= limit:
        raise AutanError(f"a continuation of {len(continuation)} tokens does not fit a context of {limit} tokens")
    prompt = (context + continuation)[-limit:]
    return prompt, len(prompt) - len(continuation)


class EngineScorer:
    """Scores on an engine this thread drives."""

    def __init__(self, engine: Engine, in_flight: int = 16, adapter: str | None = None):
        self.engine, self.in_flight, self.adapter = engine, in_flight, adapter
        tokenizer = engine.tokenizer
        self.encode = lambda text: tokenizer.encode(text, add_bos=False)
        self.prefix = tokenizer.bos_id if tokenizer.bos_id is not None else min(tokenizer.eos_ids, default=0)
        self.limit = engine.max_seq_len - 1  # the engine needs room for the token it would sample
        self.tokens = 0  # tokens computed (those from the prefix cache not counted)

    def prompts(self, doc: Doc) -> list[tuple[list[int], int]]:
        return [fit(*encode_pair(self.encode, c, x, self.prefix), self.limit) for c, x in doc.requests]

    def run(self, docs: Iterable[tuple[int, Doc]]) -> Iterator[tuple[int, list[float]]]:
        """(index, one log-likelihood per choice) for each document, in the order they finish."""
        pending = iter(docs)
        flights: dict[int, _Flight] = {}
        done: list[tuple[int, Completion | BaseException]] = []  # (flight, event), from the engine's callbacks

        def start(key: int, prompts: list[tuple[list[int], int]]) -> None:
            for choice, (prompt, start_at) in prompts:
                params = SamplingParams(max_tokens=0, prompt_logprobs=start_at)
                emit = _collector(done, key, choice)
                self.engine.add_request(prompt, params, emit=emit, adapter=self.adapter)

        def admit() -> bool:
            for key, doc in pending:
                flight = _Flight(key, self.prompts(doc))
                flights[key] = flight
                start(key, flight.first())
                return True
            return False

        while len(flights) < self.in_flight and admit():
            pass
        while flights:
            self.engine.step()
            for key, choice, event in _drain(done):
                if isinstance(event, BaseException):
                    raise event
                flight = flights[key]
                flight.scores[choice] = _continuation_logprob(event, flight.prompts[choice][1])
                self.tokens += event.usage.prompt_tokens - event.usage.cached_tokens  # computed here
                if (rest := flight.rest()) is not None:
                    start(key, rest)
                if flight.complete:
                    del flights[key]
                    yield key, flight.result()
                    while len(flights) < self.in_flight and admit():
                        pass

    def generate(self, docs: Iterable[tuple[int, Generation]]) -> Iterator[tuple[int, str]]:
        """(index, the greedy answer) for each generative document, in the order they finish."""
        requests = (
            (key, self.encode(doc.prompt)[-(self.limit - doc.max_tokens) :],  # cut from the left
             SamplingParams(temperature=0, max_tokens=doc.max_tokens, stop=doc.until))
            for key, doc in docs
        )  # fmt: skip
        yield from self._completions(requests)

    def chat(self, chats: Iterable[tuple[Any, Chat]]) -> Iterator[tuple[Any, str]]:
        """(key, the assistant's answer) for each conversation, in the order they finish."""

        def requests() -> Iterator[tuple[Any, list[int], SamplingParams]]:
            for key, chat in chats:
                ids = self.engine.tokenizer.encode_chat(list(chat.messages))
                room = self.limit - len(ids)
                if room < 1:
                    raise AutanError(f"a conversation of {len(ids)} tokens leaves no room to answer in the "
                                     f"model's context of {self.limit + 1} tokens")  # fmt: skip
                params = SamplingParams(temperature=chat.temperature, max_tokens=min(chat.max_tokens, room),
                                        seed=chat.seed)  # fmt: skip
                yield key, ids, params

        yield from self._completions(requests())

    def _completions(self, requests: Iterable[tuple[Any, list[int], SamplingParams]]) -> Iterator[tuple[Any, str]]:
        """(key, text) of each request, `2 * in_flight` of them running at once."""
        pending = iter(requests)
        done: list[tuple[Any, int, Completion | BaseException]] = []
        running = 0

        def admit() -> bool:
            for key, ids, params in pending:
                self.engine.add_request(ids, params, emit=_collector(done, key, 0), adapter=self.adapter)
                return True
            return False

        while running < 2 * self.in_flight and admit():
            running += 1
        while running:
            self.engine.step()
            for key, _, event in _drain(done):
                if isinstance(event, BaseException):
                    raise event
                running -= 1
                self.tokens += event.usage.total_tokens - event.usage.cached_tokens
                yield key, event.text
                if admit():
                    running += 1


class _Flight:
    """One document's choices on their way: the first alone while the others share its context."""

    def __init__(self, key: int, prompts: list[tuple[list[int], int]]):
        self.key, self.prompts = key, prompts
        self.scores: dict[int, float] = {}
        contexts = {tuple(p[:s]) for p, s in prompts}
        self.shared = len(prompts) > 1 and len(contexts) == 1
        self.started_rest = not self.shared

    def first(self) -> list[tuple[int, tuple[list[int], int]]]:
        chosen = self.prompts[:1] if self.shared else self.prompts
        return list(enumerate(chosen))

    def rest(self) -> list[tuple[int, tuple[list[int], int]]] | None:
        if self.started_rest:
            return None
        self.started_rest = True
        return list(enumerate(self.prompts))[1:]

    @property
    def complete(self) -> bool:
        return len(self.scores) == len(self.prompts)

    def result(self) -> list[float]:
        return [self.scores[i] for i in range(len(self.prompts))]


def _collector(done: list, key: int, choice: int) -> Callable[[Any], None]:
    def emit(event: Any) -> None:
        if isinstance(event, Completion | BaseException):
            done.append((key, choice, event))

    return emit


def _drain(done: list) -> list:
    out = list(done)
    done.clear()
    return out


def _continuation_logprob(completion: Completion, start: int) -> float:
    assert completion.prompt_logprobs is not None
    return sum(lp.logprob for lp in completion.prompt_logprobs[start:] if lp is not None)


class HTTPScorer:
    """Scores through a Mistral/OpenAI-compatible server's `/v1/completions`."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 8, timeout: float = 600
    ):
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.model, self.concurrency = model, concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.root, headers=headers, timeout=timeout)
        self.tokens = 0
        self._lock = threading.Lock()
        self.context: int | None = None  # the served model's, where /tokenize says it
        self.tokenized = self._has_tokenize()

    def _post(self, path: str, body: dict) -> dict:
        reply = self.client.post(path, json=body)
        if reply.status_code != 200:
            raise AutanError(f"{self.root}{path} answered {reply.status_code}: {reply.text[:500]}")
        return reply.json()

    def _has_tokenize(self) -> bool:
        try:
            body = {"model": self.model, "prompt": "a", "add_special_tokens": False}
            reply = self.client.post("/tokenize", json=body)
        except httpx.HTTPError:
            return False
        if reply.status_code != 200 or not isinstance(reply.json().get("tokens"), list):
            return False
        self.context = reply.json().get("max_model_len")
        return True

    def encode(self, text: str) -> list[int]:
        return self._post("/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False})["tokens"]

    def _score(self, prompt: Any) -> dict:
        # max_tokens 1, as lm-evaluation-harness sends: some servers refuse 0; the token made is not read
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 0, "temperature": 0}
        logprobs = (self._post("/v1/completions", body)["choices"][0] or {}).get("logprobs")
        if not logprobs or not isinstance(logprobs.get("token_logprobs"), list):
            raise AutanError(f"{self.root} gave no logprobs for an echoed prompt: it cannot score prompts")
        with self._lock:
            self.tokens += len(logprobs["tokens"])
        return logprobs

    def score_request(self, context: str, continuation: str) -> float:
        if self.tokenized:
            context_ids, continuation_ids = encode_pair(self.encode, context, continuation, prefix=0)
            logprobs = self._score(context_ids + continuation_ids)["token_logprobs"]
            end = len(context_ids) + len(continuation_ids)
            if len(logprobs) < end or any(lp is None for lp in logprobs[len(context_ids) : end]):
                raise AutanError(f"{self.root} did not score every token of the echoed prompt")
            return sum(logprobs[len(context_ids) : end])
        context, continuation = split_spaces(context, continuation)
        logprobs = self._score(context + continuation)
        end = len(context) + len(continuation)  # the token generated after the prompt is not read
        return sum(
            lp
            for lp, offset in zip(logprobs["token_logprobs"], logprobs["text_offset"], strict=True)
            if len(context) <= offset < end and lp is not None
        )

    def answer(self, doc: Generation) -> str:
        prompt: Any = doc.prompt
        if self.tokenized:  # cut from the left to fit, as in process
            ids = self.encode(doc.prompt)
            prompt = ids[-(self.context - 1 - doc.max_tokens) :] if self.context else ids
        body = {"model": self.model, "prompt": prompt, "max_tokens": doc.max_tokens, "stop": list(doc.until),
                "temperature": 0}  # fmt: skip
        reply = self._post("/v1/completions", body)
        with self._lock:
            self.tokens += int(reply.get("usage", {}).get("total_tokens", 0))
        return reply["choices"][0]["text"]

    def generate(self, docs: Iterable[tuple[int, Generation]]) -> Iterator[tuple[int, str]]:
        yield from self._pooled(docs, self.answer)

    def reply(self, chat: Chat) -> str:
        body = {"model": self.model, "messages": list(chat.messages), "temperature": chat.temperature,
                "max_tokens": chat.max_tokens, "seed": chat.seed}  # fmt: skip
        answer = self._post("/v1/chat/completions", body)
        with self._lock:
            self.tokens += int(answer.get("usage", {}).get("total_tokens", 0))
        return answer["choices"][0]["message"]["content"] or ""

    def chat(self, chats: Iterable[tuple[Any, Chat]]) -> Iterator[tuple[Any, str]]:
        """(key, the assistant's answer) for each conversation, in the order they finish."""
        yield from self._pooled(chats, self.reply)

    def score_doc(self, doc: Doc) -> list[float]:
        first = self.score_request(*doc.requests[0])  # alone: the others may find its context cached
        return [first, *(self.score_request(*r) for r in doc.requests[1:])]

    def run(self, docs: Iterable[tuple[int, Doc]]) -> Iterator[tuple[int, list[float]]]:
        yield from self._pooled(docs, self.score_doc)

    def _pooled(self, docs: Iterable[tuple[Any, Any]], work: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        """`work` on each document in `concurrency` threads, a bounded number queued at a time."""
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            futures: dict[concurrent.futures.Future, Any] = {}
            items = iter(docs)

            def fill() -> None:
                for key, doc in items:
                    futures[pool.submit(work, doc)] = key
                    if len(futures) >= 2 * self.concurrency:
                        return

            fill()
            while futures:
                finished, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    key = futures.pop(future)
                    yield key, future.result()
                fill()


Scorer = EngineScorer | HTTPScorer
