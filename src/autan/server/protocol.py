"""uvicorn's HTTP/1.1 protocol with a time limit on each request's headers: a client that sends
them a byte at a time (or sends nothing after connecting) is cut off after HEADER_SECONDS
instead of holding a connection for as long as it likes. (Bodies have their own limit, in
`autan.http.gate`; idle keep-alive connections uvicorn's.)"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class Protocol(H11Protocol):
    header_seconds: float = 20.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection has the same time for its headers

    def connection_lost(self, exc: Exception | None) -> None:
        if (timer := getattr(self, "_header_timer", None)) is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        waiting_for: Any = self.cycle  # the request before; a new one starts once its headers are in
        if (timer := getattr(self, "_header_timer", None)) is not None:
            timer.cancel()

        def too_slow() -> None:
            if self.cycle is waiting_for and not self.transport.is_closing():
                self.transport.close()

        self._header_timer = self.loop.call_later(self.header_seconds, too_slow)
