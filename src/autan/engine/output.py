"""The output processor: one request's token ids become text. The engine's core emits token ids
(`autan.engine.request`); `TextOutput` decodes them as they stream (whole characters only:
`StreamDecoder`), holds back what could begin a stop string and ends the request at one
(`StopMatcher`), and sends `Delta`s of text, then the `Completion`. The engine puts one on every
request that `Engine.add_request` takes, for the CLI, the server and evaluation alike. Where a
request has tools, `ToolCalls` holds back what may be a function call and parses the calls.

finish_reason: "stop" (end-of-sequence token or a stop string), "length" (max_tokens reached),
"model_length" (the context is full), "abort" (cancelled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from autan.engine.request import Finished, TokenEvent, TokenLogprob, Tokens
from autan.errors import AutanError
from autan.tokenizer import StreamDecoder, Tokenizer


@dataclass
class Delta:
    """New text of a stream (whole characters, never part of a stop string) and the tokens behind it."""

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Completion(Finished):
    """How a request finished (`Finished`), with its whole text."""

    text: str = ""

    @property
    def tokens_per_second(self) -> float:
        decoded = self.usage.completion_tokens - 1
        return decoded / self.seconds if decoded > 0 and self.seconds > 0 else 0.0


Event = Delta | Completion | BaseException


class TextOutput:
    """One request's text: called with each of its token events, it sends `Delta`s and then the
    `Completion` to `emit`, and answers True when a stop string ends the request."""

    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...], prompt_tail: list[int],
                 emit: Callable[[Event], None]) -> None:  # fmt: skip
        self.decoder = StreamDecoder(tokenizer, prompt_tail=prompt_tail)
        self.stops = StopMatcher(stop)
        self.emit = emit
        self.text: list[str] = []
        self.stopped = False  # a stop string ended it: nothing held back is sent

    def __call__(self, event: TokenEvent) -> bool:
        if isinstance(event, Tokens):
            if event.end:  # the end-of-sequence token: no text
                self._send("", event.token_ids, event.logprobs)
                return False
            pieces = "".join(self.decoder.push(token) for token in event.token_ids)
            text, self.stopped = self.stops.push(pieces)
            self._send(text, event.token_ids, event.logprobs)
            return self.stopped
        if isinstance(event, Finished):
            if event.finish_reason != "abort" and not self.stopped:  # what was held back
                tail, stopped = self.stops.push(self.decoder.flush())
                self._send(tail + ("" if stopped else self.stops.flush()), [], None)
            finished = {f.name: getattr(event, f.name) for f in fields(Finished)}
            self.emit(Completion(**finished, text="".join(self.text)))
            return False
        self.emit(event)  # an error
        return False

    def _send(self, text: str, token_ids: list[int], logprobs: list[TokenLogprob] | None) -> None:
        if text or token_ids:
            self.text.append(text)
            self.emit(Delta(text, token_ids, logprobs))


class ToolCalls:
    """One request's function calls, where it was given tools: holds back text that may be a call
    (the model's call marker, or text that could be starting one) until it is sure, passes text
    on, and parses the calls from the whole answer's tokens at the end (each model family's
    format: `autan.tokenizer.tool_calls`). Shared by every API that streams calls."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.marker = getattr(tokenizer, "tool_call_id", None)
        self.state = getattr(tokenizer, "tool_state", None)
        self.text = ""  # the answer so far
        self.sent = 0  # how much of it was passed on
        self.calling = False

    def feed(self, text: str, ids: Sequence[int]) -> str:
        """What of this piece may be streamed now."""
        self.text += text
        if self.calling or (self.marker is not None and self.marker in ids):
            self.calling = True
            return ""
        state = self.state(self.text) if self.state is not None else "text"
        if state == "call":
            self.calling = True
        if state != "text":
            return ""
        out, self.sent = self.text[self.sent :], len(self.text)
        return out

    @property
    def held(self) -> bool:
        """Whether the answer ended holding back text (a call, or the start of one)."""
        return self.calling or self.sent < len(self.text)

    def unsent(self, whole: str) -> str:
        """What of the whole answer's text was not passed on."""
        return whole[self.sent :]

    def parsed(self, done: Completion) -> tuple[str, list[dict]] | None:
        """(content, calls) when the answer is function calls, else None: a malformed call stays
        text."""
        parse = getattr(self.tokenizer, "parse_tool_calls", None)
        if parse is None:
            return None
        try:
            content, calls = parse(done.token_ids)
        except AutanError:
            return None
        return (content, calls) if calls else None


class StopMatcher:
    """Finds stop strings in streamed text, even split across tokens, and never emits them.

    Text that could still be the start of a stop string is held back until it is not. Each stop
    string has a Knuth-Morris-Pratt automaton whose state is the longest prefix of it that ends
    the text so far, so each new character costs O(1) per stop string (amortized), whatever
    their length, and the held-back text is the longest such prefix. Of the stop strings a
    piece completes, the one that starts first wins.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.fallback = [_prefix_function(s) for s in stops]
        self.states = [0] * len(stops)
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was reached)."""
        self.pending += text
        offset = len(self.pending) - len(text)  # where `text` starts in `pending`
        first = None
        for k, stop in enumerate(self.stops):
            end = self._advance(k, text)
            if end is not None:
                start = offset + end + 1 - len(stop)
                first = start if first is None else min(first, start)
        if first is not None:
            out, self.pending = self.pending[:first], ""
            return out, True
        cut = len(self.pending) - max(self.states, default=0)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def _advance(self, k: int, text: str) -> int | None:
        """Feed `text` to stop string k's automaton; the index in `text` where it first completes."""
        stop, fallback, state = self.stops[k], self.fallback[k], self.states[k]
        for i, ch in enumerate(text):
            while state and stop[state] != ch:
                state = fallback[state - 1]
            if stop[state] == ch:
                state += 1
            if state == len(stop):
                self.states[k] = 0
                return i
        self.states[k] = state
        return None

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _prefix_function(s: str) -> list[int]:
    """pi[i]: the length of the longest proper prefix of s[: i + 1] that is also its suffix."""
    pi = [0] * len(s)
    for i in range(1, len(s)):
        k = pi[i - 1]
        while k and s[i] != s[k]:
            k = pi[k - 1]
        pi[i] = k + (s[i] == s[k])
    return pi
