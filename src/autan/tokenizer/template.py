"""Chat templates (Jinja) from model files, rendered in Jinja's sandbox, in a process of their own.

A template shipped inside a GGUF or a tokenizer_config.json is code from a file someone
downloaded: the immutable sandbox refuses attribute tricks (`__class__`, `__globals__`...) and
mutation of the values passed in, so rendering cannot reach Python. It can still loop for ever
(nested loops, a recursive macro) or build a string of gigabytes, and a conversation a user
sends can make a benign template do the same. So each template renders in a small worker
process (`template_worker.py`, started on first use) with a time limit, a memory limit and an
output limit; a render past them ends in a ChatTemplateError, the worker is replaced, and
nothing else waits on it: each model's template has its own worker.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from autan.errors import AutanError
from autan.tokenizer.base import Message, Tool

WORKER = Path(__file__).with_name("template_worker.py")


class ChatTemplateError(AutanError, ValueError):
    pass


@dataclass(frozen=True)
class TemplateLimits:
    seconds: float = 5.0  # wall-clock time for one render
    max_chars: int = 16 * 2**20  # characters one render may write


class ChatTemplate:
    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", limits: TemplateLimits | None = None):
        try:  # parse here too, so a broken template is refused when the model loads
            ImmutableSandboxedEnvironment().parse(source)
        except (TemplateError, RecursionError, MemoryError) as e:
            raise ChatTemplateError(f"the chat template does not parse: {e}") from None
        self.bos_token, self.eos_token = bos_token, eos_token
        self.source = source
        self.limits = limits or TemplateLimits()
        self._worker: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> str:
        """The prompt text; with a final assistant `prefix` message, that message is continued."""
        messages = [dict(m) for m in messages]
        continuing = bool(messages) and messages[-1].get("role") == "assistant" and messages[-1].get("prefix")
        variables: dict[str, Any] = {
            "messages": messages,
            "tools": list(tools) if tools else None,
            "add_generation_prompt": not continuing,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        text = self._render(variables)
        if continuing:  # cut the end-of-turn markup after the message being continued
            content = messages[-1].get("content") or ""
            end = text.rfind(content) + len(content) if content else -1
            if content and end >= len(content):
                text = text[:end]
        return text

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _render(self, variables: dict[str, Any]) -> str:
        request = (json.dumps({"variables": variables}) + "\n").encode()
        with self._lock:
            worker = self._start()
            deadline = time.monotonic() + self.limits.seconds
            try:
                _write(worker, request, deadline)
                line = _read_line(worker, deadline)
            except TimeoutError:
                self._stop()
                raise ChatTemplateError(
                    f"the chat template took more than {self.limits.seconds:g} s to render this conversation"
                ) from None
            except OSError as e:  # the worker died (killed for memory, say): the next render starts a new one
                self._stop()
                raise ChatTemplateError(f"the chat template's renderer stopped: {e}") from None
        reply = json.loads(line)
        if "error" in reply:
            raise ChatTemplateError(reply["error"])
        return reply["text"]

    def _start(self) -> subprocess.Popen:
        if self._worker is not None and self._worker.poll() is None:
            return self._worker
        worker = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # its own session: a Ctrl-C at the terminal stops the answer, not the renderer (which,
            # killed by it, could still be dying when the next message is written to it)
            start_new_session=True,
        )
        weakref.finalize(self, worker.kill)  # a template that is dropped takes its worker with it
        setup = json.dumps({"source": self.source, "max_chars": self.limits.max_chars}) + "\n"
        assert worker.stdin is not None
        worker.stdin.write(setup.encode())
        worker.stdin.flush()
        self._worker = worker
        return worker

    def _stop(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker.wait()
            self._worker = None

    def __getstate__(self) -> dict[str, Any]:  # a worker is not carried across processes
        return {**self.__dict__, "_worker": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())


def _write(worker: subprocess.Popen, data: bytes, deadline: float) -> None:
    """Write all of `data` to the worker, giving up at `deadline` (a worker stuck in a loop stops reading)."""
    assert worker.stdin is not None
    fd = worker.stdin.fileno()
    view = memoryview(data)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        while view:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            view = view[os.write(fd, view[: 1 << 16]) :]


def _read_line(worker: subprocess.Popen, deadline: float) -> bytes:
    assert worker.stdout is not None
    fd = worker.stdout.fileno()
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise OSError(f"it exited with {worker.wait()}")
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)
