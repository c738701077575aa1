"""Accounts, sessions and API keys, in the conversation database.

Passwords are scrypt-hashed with a salt each. Session tokens and API keys are random 256-bit
strings of which only the SHA-256 is stored: a stolen copy of the database opens nothing. User
names are unique whatever their case or Unicode spelling ("Alice", "alice" and "ａｌｉｃｅ" are one
name). The first account made is the admin, who may add users and keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import sessionmaker

from autan.store.errors import Invalid, NotFound
from autan.store.names import refused_character, skeleton
from autan.store.tables import ApiKey, Session, User, now

SESSION_DAYS = 30
KEY_PREFIX = "sk-autan-"
MAX_PASSWORD = 1024  # scrypt's cost grows with the input; nobody types more


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for. `user_id` None is the owner of a single-user store."""

    user_id: str | None
    username: str | None
    admin: bool


@dataclass(frozen=True)
class SessionInfo:
    """A session: its user's principal, or the hash of the API key it was opened with (which must
    still be valid each time: revoking the key ends the session)."""

    principal: Principal
    key_hash: str | None = None


def username_key(name: str) -> str:
    """The form two names share when they are the same name to a person."""
    return unicodedata.normalize("NFKC", name.strip()).casefold()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Accounts:
    def __init__(self, sessions: sessionmaker):
        self._sessions = sessions
        # hashed once: unknown names take as long to refuse as a wrong password
        self._dummy_hash = hash_password(secrets.token_hex(16))

    # users -------------------------------------------------------------------------------------

    def create_user(self, username: str, password: str, *, admin: bool = False) -> dict[str, Any]:
        """A new account; the first account of a database is always an admin."""
        name = username.strip()
        if (bad := refused_character(name)) is not None:
            raise Invalid(f"a username may not hold {bad}")
        if not (3 <= len(name) <= 64) or not name.isprintable():
            raise Invalid(f"a username must have 3 to 64 printable characters, got {len(name)}")
        if not 8 <= len(password) <= MAX_PASSWORD:
            raise Invalid(f"a password must have 8 to {MAX_PASSWORD} characters, got {len(password)}")
        key = username_key(name)
        with self._sessions.begin() as db:
            if db.scalar(select(User.id).where(User.username_key == key)) is not None:
                raise Invalid(f"the username '{name}' is taken")
            mine = skeleton(name)
            if any(skeleton(other) == mine for other in db.scalars(select(User.username))):
                raise Invalid(f"the username '{name}' looks the same as one that is taken: choose another")
            first = db.scalar(select(User.id).limit(1)) is None
            user = User(username=name, username_key=key, password_hash=hash_password(password), is_admin=admin or first)
            db.add(user)
            db.flush()
            return _user(user)

    def users(self) -> list[dict[str, Any]]:
        with self._sessions.begin() as db:
            return [_user(u) for u in db.scalars(select(User).order_by(User.created_at))]

    def has_users(self) -> bool:
        with self._sessions.begin() as db:
            return db.scalar(select(User.id).limit(1)) is not None

    def remove_user(self, user_id: str) -> None:
        """Delete an account with its sessions, keys and conversations. The last admin stays."""
        with self._sessions.begin() as db:
            user = db.get(User, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
            admins = db.scalars(select(User.id).where(User.is_admin)).all()
            if user.is_admin and len(admins) == 1:
                raise Invalid(f"'{user.username}' is the only admin: make another admin first")
            db.delete(user)

    def user_named(self, username: str) -> dict[str, Any]:
        with self._sessions.begin() as db:
            user = db.scalar(select(User).where(User.username_key == username_key(username.strip())))
            if user is None:
                raise NotFound(f"no user named '{username}'")
            return _user(user)

    def check_password(self, username: str, password: str) -> Principal | None:
        """The account these credentials open, or None; as slow for an unknown name as for a wrong password."""
        with self._sessions.begin() as db:
            user = db.scalar(select(User).where(User.username_key == username_key(username.strip())))
            stored = user.password_hash if user is not None else self._dummy_hash
            matches = check_password(password[: MAX_PASSWORD + 1], stored)
            if user is None or not matches:
                return None
            return Principal(user.id, user.username, user.is_admin)

    # sessions ----------------------------------------------------------------------------------

    def new_session(self, principal: Principal, *, key: str | None = None, days: int = SESSION_DAYS) -> str:
        """A session for `principal`, or for whoever `key` speaks for (checked again at every use)."""
        token = secrets.token_urlsafe(32)
        row = Session(
            token_hash=token_hash(token),
            user_id=None if key is not None else principal.user_id,
            key_hash=token_hash(key) if key is not None else None,
            expires_at=now() + timedelta(days),
        )
        with self._sessions.begin() as db:
            db.execute(delete(Session).where(Session.expires_at < now()))  # the expired go when anyone signs in
            db.add(row)
        return token

    def session(self, token: str) -> SessionInfo | None:
        """What a session token opens; None when it is unknown or has expired."""
        with self._sessions.begin() as db:
            session = db.get(Session, token_hash(token))
            if session is None:
                return None
            if _aware(session.expires_at) <= now():
                db.delete(session)
                return None
            if session.key_hash is not None:
                return SessionInfo(Principal(None, None, False), session.key_hash)
            user = db.get(User, session.user_id) if session.user_id else None
            return SessionInfo(Principal(user.id, user.username, user.is_admin)) if user else None

    def end_session(self, token: str) -> None:
        with self._sessions.begin() as db:
            db.execute(delete(Session).where(Session.token_hash == token_hash(token)))

    # API keys ----------------------------------------------------------------------------------

    def create_key(self, name: str = "", user_id: str | None = None) -> tuple[dict[str, Any], str]:
        """A new key: its record and the key itself, which is shown this once and never stored."""
        if len(name) > 100:
            raise Invalid(f"a key name has at most 100 characters, got {len(name)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as db:
            if user_id is not None and db.get(User, user_id) is None:
                raise NotFound(f"user {user_id} does not exist")
            row = ApiKey(key_hash=token_hash(key), name=name, user_id=user_id)
            db.add(row)
            db.flush()
            return _key(row), key

    def api_keys(self) -> list[dict[str, Any]]:
        with self._sessions.begin() as db:
            return [_key(k) for k in db.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def has_keys(self) -> bool:
        with self._sessions.begin() as db:
            return db.scalar(select(ApiKey.id).limit(1)) is not None

    def key_owner(self, key: str) -> Principal | None:
        return self.key_hash_owner(token_hash(key))

    def key_hash_owner(self, key_hash: str) -> Principal | None:
        """Whom a key made by an admin speaks for, by the key's hash, or None. Looked up by hash,
        which tells an attacker nothing about the keys that exist."""
        with self._sessions.begin() as db:
            row = db.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            if row is None:
                return None
            user = db.get(User, row.user_id) if row.user_id else None
            return Principal(user.id, user.username, user.is_admin) if user else Principal(None, None, False)

    def remove_key(self, key_id: str) -> None:
        with self._sessions.begin() as db:
            row = db.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"API key {key_id} does not exist")
            db.delete(row)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands datetimes back without a zone


def _user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "admin": user.is_admin,
        "created_at": _aware(user.created_at).isoformat(),
    }


def _key(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "user_id": row.user_id, "created_at": _aware(row.created_at).isoformat()}


def hash_password(password: str) -> str:
    """scrypt with a random salt: `scrypt$n$r$p$salt$hash`."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        secret = password.encode("utf-8", "surrogatepass")
        computed = hashlib.scrypt(secret, salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)
