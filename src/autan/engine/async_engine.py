"""The engine for asyncio programs: steps run in a background thread, streams are async iterators.

torch releases the GIL inside its kernels, so the event loop keeps serving while a step runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from autan.engine.constraint import JsonConstraint
from autan.engine.engine import Engine
from autan.engine.request import Completion, Delta, Event
from autan.engine.sampling import SamplingParams
from autan.tokenizer import Message, Tool


class AsyncRequestStream:
    """`async for delta in stream`; `completion` is set at the end. Leaving early aborts the request."""

    def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop):
        self.engine, self.loop = engine, loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.id = ""
        self.completion: Completion | None = None

    def emit(self, event: Event) -> None:  # called from the engine's thread
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
            if self.completion is None:  # the consumer left (a client went away): stop the work
                self.abort()

    def abort(self) -> None:
        self.engine.abort(self.id)


class AsyncEngine:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._stopping = False
        _release_openmp_threads()  # those of the thread that loaded the model, which now steps no more
        self._thread = threading.Thread(target=self._run, name="autan-engine", daemon=True)
        self._thread.start()

    async def add_request(
        self,
        prompt: Sequence[int] | Sequence[Message],
        params: SamplingParams | None = None,
        *,
        tools: Sequence[Tool] | None = None,
        request_id: str | None = None,
        constraint: JsonConstraint | None = None,
    ) -> AsyncRequestStream:
        """Queue a request; bad input raises here, before anything streams."""
        if self._stopping:
            raise RuntimeError("the engine is closed")
        stream = AsyncRequestStream(self, asyncio.get_running_loop())
        stream.id = request_id = request_id or f"req-{uuid.uuid4().hex}"
        # Encoding a long conversation takes a while: keep it off the event loop.
        work = asyncio.to_thread(
            self.engine.add_request,
            prompt,
            params,
            tools=tools,
            request_id=request_id,
            emit=stream.emit,
            constraint=constraint,
        )
        try:
            await work
        except asyncio.CancelledError:  # the caller went away while it was being queued
            self.abort(request_id)
            raise
        return stream

    def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)

    def close(self) -> None:
        """Stop the engine thread; requests still running end with an error."""
        self._stopping = True
        self.engine.wakeup.set()
        self._thread.join()
        self.engine.fail_all(RuntimeError("the engine was closed"))

    def _run(self) -> None:
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
