"""Who may call what, for every route family: `/v1`, the chat app's `/api`, `/metrics`.

A server is *locked* when it has API keys (`--api-key`, `AUTAN_API_KEYS`, or keys an admin made)
or accounts (`--multi-user`). A locked server answers only requests that carry a credential:

- an API key, as `Authorization: Bearer KEY`: keys from the command line are the operator's
  (they may administer); keys an admin made speak for the user they were made for;
- a session cookie, set by `POST /api/login` (an account) or `POST /api/session` (an API key
  typed once into the app), kept server-side as a hash, with an expiry.

Sign-up is closed unless the operator opens it (`--allow-signup`); the first account, made by
`autan user add` or by the first sign-up of an empty database, is the admin. Failed sign-ins
are throttled per name and per client address, and answer in the same time whether or not the
name exists. Keys are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from autan.http.errors import APIError
from autan.store.accounts import Accounts, Principal, username_key

COOKIE = "autan_session"
INTERNAL = "autan-internal."
OPERATOR = Principal(None, None, True)  # a key from the command line
ANONYMOUS = Principal(None, None, False)  # anyone, on a server that is not locked


@dataclass(frozen=True)
class Policy:
    api_keys: Sequence[str] = ()
    multi_user: bool = False
    allow_signup: bool = False
    public_metrics: bool = False


class Access:
    """Who passes, per route family: `v1`, `app`, `admin`, `metrics` (routes declare them through
    `v1_caller`, `app_user`, `admin_user`, `metrics_reader` below). Each returns the request's
    `Principal` or raises a 401/403 in the API's envelope."""

    def __init__(self, policy: Policy, accounts: Accounts | None = None):
        self.policy, self.accounts = policy, accounts
        self._operator_keys = [_digest(k) for k in policy.api_keys]
        self.throttle = Throttle()  # sign-ins: by name and by address
        # wrong API keys, by address: past 20, one try a second. Paced, not locked out: the holder of
        # the right key on that address waits a second at most, a guesser gets one guess a second
        self.key_throttle = Throttle(free=20, longest=1.0)
        self._internal = secrets.token_urlsafe(32)  # this process's own requests (a batch's), never sent out

    @property
    def locked(self) -> bool:
        if self.policy.api_keys or self.policy.multi_user:
            return True
        return self.accounts is not None and self.accounts.has_keys()

    @property
    def signup_open(self) -> bool:
        """Anyone may make an account: the operator said so, or none exists yet (the first is the admin)."""
        if not self.policy.multi_user or self.accounts is None:
            return False
        return self.policy.allow_signup or (not self.policy.api_keys and not self.accounts.has_users())

    def principal(self, request: Request) -> Principal | None:
        """Whom the request's credential speaks for; None when it carries none that is valid.

        Wrong keys count against the client's address like wrong passwords, so a weak key
        cannot be guessed through /v1 either. On a server that is not locked no key can be valid,
        so a bearer token is ignored, never counted: OpenAI-style clients send a dummy one."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if not key and (key := request.headers.get("x-api-key", "")):  # Anthropic's clients send their key so
            scheme = "bearer"
        if scheme.lower() == "bearer" and key.startswith(INTERNAL) and self.locked:
            return self._internal_principal(key)
        if scheme.lower() == "bearer" and key and self.locked:
            address = self.key_throttle.keys(request)
            try:
                self.key_throttle.check(address)
            except APIError:
                # an account's key is 256 random bits, beyond guessing: it passes while its address is
                # paced, so one guesser behind a shared address locks out nobody with such a key
                if self.accounts is not None and (owner := self.accounts.key_hash_owner(_hex(key.strip()))):
                    return owner
                raise
            found = self.key_principal(key.strip())
            if found is None:
                self.key_throttle.failed(address)
            return found
        token = request.cookies.get(COOKIE)
        if not token or self.accounts is None:
            return None
        session = self.accounts.session(token)
        if session is None or session.key_hash is None:
            return session.principal if session else None
        return self._key_hash_principal(session.key_hash)  # the key must still be valid: revoked, it ends here

    def internal_key(self, user_id: str | None) -> str:
        """A key for a request this process sends itself on a user's behalf (a batch's)."""
        return f"{INTERNAL}{self._internal}.{user_id or '-'}"

    def _internal_principal(self, key: str) -> Principal | None:
        secret, _, user = key.removeprefix(INTERNAL).partition(".")
        if not hmac.compare_digest(secret.encode(), self._internal.encode()):
            return None
        return Principal(None if user == "-" else user, None, False)

    def key_principal(self, key: str) -> Principal | None:
        return self._key_hash_principal(_hex(key))

    def _key_hash_principal(self, key_hash: str) -> Principal | None:
        digest = bytes.fromhex(key_hash)
        matched = False
        for known in self._operator_keys:  # every key compared, in constant time each
            matched |= hmac.compare_digest(digest, known)
        if matched:
            return OPERATOR
        return self.accounts.key_hash_owner(key_hash) if self.accounts is not None else None

    # the dependencies --------------------------------------------------------------------------

    def v1(self, request: Request) -> Principal:
        """The caller, also kept as `request.state.principal` for the route to read."""
        found = self.principal(request)
        if found is None and self.locked:
            raise _unauthorized(request)
        request.state.principal = found or ANONYMOUS
        return request.state.principal

    def app(self, request: Request) -> Principal:
        """The chat app's data: a locked server's `/api` needs a credential; with accounts, a user's."""
        found = self.v1(request)
        if self.policy.multi_user and found.user_id is None and not found.admin:
            raise APIError(401, "sign in first")
        return found

    def admin(self, request: Request) -> Principal:
        found = self.principal(request)
        if found is None:
            raise _unauthorized(request)
        if not found.admin:
            raise APIError(403, "only an admin may do this")
        return found

    def metrics(self, request: Request) -> Principal:
        if self.policy.public_metrics:
            return ANONYMOUS
        return self.v1(request)


# what routes declare (`Depends(v1_caller)`, or the `Caller`, `User`, `Admin` annotations) ------


def access_of(request: Request) -> Access:
    """The app's `Access` (`create_app` keeps it as `app.state.access`)."""
    return request.app.state.access


def v1_caller(request: Request) -> Principal:
    return access_of(request).v1(request)


def app_user(request: Request) -> Principal:
    return access_of(request).app(request)


def admin_user(request: Request) -> Principal:
    return access_of(request).admin(request)


def metrics_reader(request: Request) -> Principal:
    return access_of(request).metrics(request)


Caller = Annotated[Principal, Depends(v1_caller)]
User = Annotated[Principal, Depends(app_user)]
Admin = Annotated[Principal, Depends(admin_user)]


def _unauthorized(request: Request) -> APIError:
    if request.headers.get("authorization"):
        return APIError(401, "the API key is not valid")
    return APIError(401, "no API key: send `Authorization: Bearer KEY` (or sign in to the chat app)")


def _hex(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Throttle:
    """Failed sign-ins, counted per name and per client address over a window.

    After `free` failures in `window` seconds, each further attempt waits twice as long as the
    one before (1 s, 2 s, 4 s ... at most `longest`), and is refused without checking the
    password, so a right guess during the wait gets nothing either.
    """

    def __init__(self, free: int = 5, window: float = 900.0, longest: float = 900.0, most: int = 10_000):
        self.free, self.window, self.longest, self.most = free, window, longest, most
        self._failures: dict[str, tuple[int, float, float]] = {}  # key -> (count, first, blocked until)

    @staticmethod
    def keys(request: Request, username: str | None = None) -> list[str]:
        keys = [f"ip:{request.client.host if request.client else '?'}"]
        return [*keys, f"user:{username_key(username)}"] if username else keys

    def check(self, keys: Sequence[str]) -> None:
        """Raise a 429 with Retry-After while any of `keys` must wait."""
        now = time.monotonic()
        wait = max((self._failures[k][2] - now for k in keys if k in self._failures), default=0.0)
        if wait > 0:
            raise APIError(
                429,
                f"too many failed attempts: try again in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )

    def failed(self, keys: Sequence[str]) -> None:
        now = time.monotonic()
        if len(self._failures) >= self.most:
            self._forget_some(now)
        for key in keys:
            count, first, _ = self._failures.get(key, (0, now, now))
            if now - first > self.window:
                count, first = 0, now
            count += 1
            blocked = now + min(2.0 ** (count - self.free - 1), self.longest) if count > self.free else now
            self._failures[key] = (count, first, blocked)

    def _forget_some(self, now: float) -> None:
        """Make room: first the windows that have passed, then the oldest of those not blocked,
        and only then the blocks that end soonest. Flooding the table with new failures cannot
        lift a block that is still running."""
        for key in [
            k for k, (_, first, blocked) in self._failures.items() if now - first > self.window and blocked <= now
        ]:
            del self._failures[key]
        if len(self._failures) < self.most:
            return
        by_age = sorted(
            self._failures, key=lambda k: (self._failures[k][2] > now, self._failures[k][2], self._failures[k][1])
        )
        for key in by_age[: max(1, self.most // 10)]:
            del self._failures[key]

    def succeeded(self, keys: Sequence[str]) -> None:
        for key in keys:
            if key.startswith("user:"):
                self._failures.pop(key, None)
