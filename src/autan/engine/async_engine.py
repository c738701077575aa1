"""The engine for asyncio programs: steps run in a background thread, streams are async iterators.

torch releases the GIL inside its kernels, so the event loop keeps serving while a step runs.
If the thread ever dies, every open stream ends with `EngineUnavailable` and new requests are
refused with it, so nothing waits on an engine that will never step again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from autan.engine.constraint import GrammarConstraint
from autan.engine.engine import Engine
from autan.engine.output import Completion, Delta, Event
from autan.engine.sampling import SamplingParams
from autan.errors import AutanError
from autan.tokenizer import Message, Tool

log = logging.getLogger("autan.engine")


class EngineUnavailable(AutanError, RuntimeError):
    """The engine thread has stopped (closed, or died of an error): it takes no more requests."""


class AsyncRequestStream:
    """`async for delta in stream`; `completion` is set at the end. Leaving early aborts the request."""

    def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop):
        self.engine, self.loop = engine, loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.id = ""
        self.completion: Completion | None = None

    def emit(self, event: Event) -> None:  # called from the engine's thread
        if isinstance(event, Completion | BaseException):
            self.engine.streams.pop(self.id, None)
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the consumer's event loop is closed: nobody will read this
            if not isinstance(event, Completion | BaseException):
                self.abort()

    async def __aiter__(self) -> AsyncIterator[Delta]:
        try:
            while True:
                event = await self.queue.get()
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, Completion):
                    self.completion = event
                    return
                yield event
        finally:
            self.engine.streams.pop(self.id, None)
            if self.completion is None:  # the consumer left (a client went away): stop the work
                self.abort()

    def abort(self) -> None:
        self.engine.abort(self.id)


class AsyncEngine:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._stopping = False
        self.failure: BaseException | None = None  # what ended the engine thread, if it ended
        self.streams: dict[str, AsyncRequestStream] = {}  # open streams, to end them if the thread dies
        _release_openmp_threads()  # those of the thread that loaded the model, which now steps no more
        self._thread = threading.Thread(target=self._run, name="autan-engine", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self.failure is None and not self._stopping and self._thread.is_alive()

    async def add_request(
        self,
        prompt: Sequence[int] | Sequence[Message],
        params: SamplingParams | None = None,
        *,
        tools: Sequence[Tool] | None = None,
        request_id: str | None = None,
        constraint: GrammarConstraint | None = None,
        adapter: str | None = None,
    ) -> AsyncRequestStream:
        """Queue a request; bad input raises here, before anything streams.

        If the caller is cancelled while the request is being encoded, the request is aborted
        as soon as it is queued: a cancel is never lost."""
        self._check_alive()
        stream = AsyncRequestStream(self, asyncio.get_running_loop())
        stream.id = request_id = request_id or f"req-{uuid.uuid4().hex}"
        self.streams[request_id] = stream
        # Encoding a long conversation takes a while: keep it off the event loop.
        work = asyncio.ensure_future(
            asyncio.to_thread(
                self.engine.add_request,
                prompt,
                params,
                tools=tools,
                request_id=request_id,
                emit=stream.emit,
                constraint=constraint,
                adapter=adapter,
            )
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:  # the caller went away: abort once the request is queued
            self.streams.pop(request_id, None)
            work.add_done_callback(lambda _: self.abort(request_id))
            raise
        except BaseException:
            self.streams.pop(request_id, None)
            raise
        if not self.alive:  # died while this was being queued: nobody will step it
            stream.emit(self._unavailable())
        return stream

    def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)

    def close(self) -> None:
        """Stop the engine thread; requests still running end with an error."""
        self._stopping = True
        self.engine.wakeup.set()
        self._thread.join()
        self.engine.fail_all(EngineUnavailable("the engine was closed"))

    def _check_alive(self) -> None:
        if not self.alive:
            raise self._unavailable()

    def _unavailable(self) -> EngineUnavailable:
        if self.failure is not None:
            return EngineUnavailable(f"the engine stopped after an error: {self.failure!r}")
        return EngineUnavailable("the engine is closed")

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # the thread must not die silently: see `finally`
            self.failure = e
            log.exception("the engine thread died")
        finally:
            if not self._stopping:
                self.failure = self.failure or RuntimeError("the engine thread ended")
                for stream in list(self.streams.values()):  # not through the engine: it may be what broke
                    stream.emit(self._unavailable())

    def _loop(self) -> None:
        wakeup = self.engine.wakeup
        while not self._stopping:
            wakeup.clear()
            if not self.engine.has_work:
                wakeup.wait(timeout=1.0)
                continue
            try:
                if not self.engine.step():
                    wakeup.wait(timeout=0.01)  # only aborts were pending
            except Exception as e:  # a bug in scheduling: fail the requests, keep serving
                self.engine.fail_all(e)


def _release_openmp_threads() -> None:
    """Free the calling thread's OpenMP workers (GNU OpenMP, as PyTorch's wheels ship it).

    GNU OpenMP keeps a team of workers for each thread that ran parallel code. Once it manages
    more threads than there are CPUs, workers stop spinning between parallel regions and every
    small product pays a wake-up: decoding in the engine's thread, after loading in the main
    one, ran at half speed. A later parallel region in the calling thread makes a new team.
    """
    maps = Path("/proc/self/maps")
    for line in maps.read_text().splitlines() if maps.exists() else ():
        path = line.split()[-1]
        if os.path.basename(path).startswith("libgomp") and f"torch{os.sep}lib" in path:
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(path).omp_pause_resource_all(1)  # omp_pause_soft
            return
