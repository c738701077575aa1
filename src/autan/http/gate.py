"""What every request passes before any route runs, as one plain ASGI middleware:

- the `Host` header must name this server: a web page whose domain an attacker points at
  127.0.0.1 (DNS rebinding) gets a 421, so a browser can never reach a local server through a
  name it does not know. IP addresses, `localhost` and the machine's own names always pass;
  `--allowed-host` adds names (a reverse proxy's), `*` turns the check off;
- a state-changing request a browser sends from another origin (another site, or another port
  of localhost) gets a 403, cookie or not: no page can act for a signed-in user, nor create
  conversations on an open server; clients that are not browsers send no Origin and pass;
- the body has a size limit, checked against Content-Length before anything is read and
  counted as it arrives otherwise (413), and a time limit: each part of it must come within
  BODY_SECONDS of the one before (408), so a client that trickles a byte at a time holds no
  connection for long (the headers have theirs: `autan.server.launch.Protocol`);
- every response carries a Content-Security-Policy (scripts, styles and connections only from
  the server itself; no frames) and the headers that keep browsers from guessing types or
  leaking the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException

from autan.http.errors import error_body

MAX_BODY_BYTES = 8 * 2**20
BODY_SECONDS = 30.0  # the longest wait for the next part of a request body
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class HostNames:
    """The names a Host header may carry."""

    def __init__(self, extra: Sequence[str] = ()):
        self.any = "*" in extra
        names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
        self.exact = names | {n.lower() for n in extra if not n.startswith("*.")}
        self.suffixes = (*(n[1:].lower() for n in extra if n.startswith("*.")), ".localhost")

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        name = _hostname(host)
        if name is None:
            return False
        try:
            ipaddress.ip_address(name)
            return True  # an address is what it says: nothing to rebind
        except ValueError:
            pass
        return name in self.exact or name.endswith(self.suffixes)


def _hostname(host: str) -> str | None:
    """The name in a Host header, without its port; None if it is not one."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "x"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return host[1:end]
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


class Guard:
    def __init__(self, app: Callable, hosts: HostNames, max_body_bytes: int = MAX_BODY_BYTES):
        self.app, self.hosts, self.max_body_bytes = app, hosts, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            shown = host[:100] or "(none)"
            message = f"Host {shown!r} is not one of this server's names; start it with --allowed-host NAME to add one"
            await _answer(send, 421, message, "host_not_allowed")
            return
        if scope["method"] not in SAFE_METHODS and not _same_origin(headers, scope):
            origin = headers[b"origin"].decode("latin-1")[:100]
            await _answer(send, 403, f"a request from the page {origin} may not change anything here", "cross_origin")
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await _answer(send, 413, self._too_large(int(length)), "body_too_large")
            return
        await self.app(scope, self._counting(receive), _with_headers(send))

    def _too_large(self, size: int) -> str:
        limit = self.max_body_bytes
        return f"the request body has {size} bytes; the limit is {limit} (--max-body-size)"

    def _counting(self, receive: Callable) -> Callable:
        received = 0

        finished = False

        async def counted() -> dict:
            nonlocal received, finished
            if finished:  # the body is read: what comes next is the client leaving, whenever it does
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_SECONDS)
            except TimeoutError:
                raise HTTPException(408, f"the request body stopped arriving for {BODY_SECONDS:g} s") from None
            finished = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # raised inside the route's body read: FastAPI answers it as a 413
                    raise HTTPException(413, self._too_large(received) + " (stopped reading there)")
            return message

        return counted


def _same_origin(headers: dict[bytes, bytes], scope: dict[str, Any]) -> bool:
    origin = headers.get(b"origin")
    if origin is None:
        return True  # not a browser's cross-origin request: browsers send Origin on those
    scheme = scope.get("scheme", "http")
    return origin.decode("latin-1").lower() == f"{scheme}://{headers.get(b'host', b'').decode('latin-1').lower()}"


def _with_headers(send: Callable) -> Callable:
    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message = {
                **message,
                "headers": [*message.get("headers", []), *(h for h in HEADERS if h[0] not in present)],
            }
        await send(message)

    return sending


async def _answer(send: Callable, status: int, message: str, code: str) -> None:
    body = error_body(status, message, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
