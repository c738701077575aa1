"""Conversations kept in a database: SQLite (WAL) in autan's data directory by default, or any
SQLAlchemy URL (PostgreSQL at scale). The schema is brought up to date by Alembic on open, so an
upgrade never loses history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, or_, select
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker

from autan import registry
from autan.errors import AutanError
from autan.store.models import Conversation, Message, Session, User, now

MIGRATIONS = Path(__file__).parent / "migrations"
ROLES = ("system", "user", "assistant")
STATUSES = ("streaming", "complete", "stopped", "error")


class NotFound(AutanError, LookupError):
    pass


class Invalid(AutanError, ValueError):
    pass


def default_url() -> str:
    return f"sqlite:///{registry.home() / 'autan.db'}"


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    def __init__(self, url: str | None = None):
        url = url or default_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[DBSession]:
        with self._sessions.begin() as db:
            yield db

    # conversations -----------------------------------------------------------------------------

    def list_conversations(self, user_id: str | None, query: str = "") -> list[dict[str, Any]]:
        """Most recently updated first; `query` matches titles and message contents."""
        with self.session() as db:
            stmt = select(Conversation).where(Conversation.user_id == user_id)
            if query:
                pattern = f"%{_escape_like(query)}%"
                matching = select(Message.conversation_id).where(Message.content.ilike(pattern, escape="\\"))
                stmt = stmt.where(or_(Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(matching)))
            rows = db.scalars(stmt.order_by(Conversation.updated_at.desc())).all()
            return [_conversation_summary(c) for c in rows]

    def create_conversation(self, user_id: str | None, **settings: Any) -> dict[str, Any]:
        with self.session() as db:
            conversation = Conversation(user_id=user_id, **_settings(settings))
            db.add(conversation)
            db.flush()
            return self._full(conversation)

    def get_conversation(self, user_id: str | None, conversation_id: str) -> dict[str, Any]:
        with self.session() as db:
            return self._full(self._owned(db, user_id, conversation_id))

    def update_conversation(self, user_id: str | None, conversation_id: str, **changes: Any) -> dict[str, Any]:
        with self.session() as db:
            conversation = self._owned(db, user_id, conversation_id)
            leaf = changes.pop("current_leaf_id", None)
            if leaf is not None:
                if db.get(Message, leaf) is None or db.get(Message, leaf).conversation_id != conversation_id:
                    raise Invalid(f"message {leaf} is not in conversation {conversation_id}")
                conversation.current_leaf_id = leaf
            if "title" in changes:
                title = str(changes.pop("title")).strip()
                if not title or len(title) > 200:
                    raise Invalid(f"a title must have 1 to 200 characters, got {len(title)}")
                conversation.title = title
            for key, value in _settings(changes).items():
                setattr(conversation, key, value)
            conversation.updated_at = now()
            return self._full(conversation)

    def delete_conversation(self, user_id: str | None, conversation_id: str) -> None:
        with self.session() as db:
            db.delete(self._owned(db, user_id, conversation_id))

    # messages ----------------------------------------------------------------------------------

    def add_message(
        self,
        user_id: str | None,
        conversation_id: str,
        *,
        role: str,
        content: str,
        parent_id: str | None,
        status: str = "complete",
        model: str = "",
        stats: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new message under `parent_id` (a new branch when the parent already has children)."""
        if role not in ROLES:
            raise Invalid(f"role '{role}' must be one of {', '.join(ROLES)}")
        if status not in STATUSES:
            raise Invalid(f"status '{status}' must be one of {', '.join(STATUSES)}")
        with self.session() as db:
            conversation = self._owned(db, user_id, conversation_id)
            if parent_id is not None:
                parent = db.get(Message, parent_id)
                if parent is None or parent.conversation_id != conversation_id:
                    raise Invalid(f"parent message {parent_id} is not in conversation {conversation_id}")
            message = Message(
                conversation_id=conversation_id,
                parent_id=parent_id,
                role=role,
                content=content,
                status=status,
                model=model,
                stats=stats,
            )
            db.add(message)
            db.flush()
            conversation.current_leaf_id = message.id
            conversation.updated_at = now()
            return _message(message)

    def update_message(self, user_id: str | None, message_id: str, **changes: Any) -> dict[str, Any]:
        """Change a message's content, status or stats (a streaming answer is saved as it grows)."""
        with self.session() as db:
            message = db.get(Message, message_id)
            if message is None:
                raise NotFound(f"message {message_id} does not exist")
            self._owned(db, user_id, message.conversation_id)
            if changes.get("status") is not None and changes["status"] not in STATUSES:
                raise Invalid(f"status '{changes['status']}' must be one of {', '.join(STATUSES)}")
            for key in ("content", "status", "stats"):
                if key in changes and changes[key] is not None:
                    setattr(message, key, changes[key])
            message.conversation.updated_at = now()
            return _message(message)

    # export / import ---------------------------------------------------------------------------

    def export(self, user_id: str | None, conversation_id: str) -> dict[str, Any]:
        conversation = self.get_conversation(user_id, conversation_id)
        return {"format": "autan-conversation", "version": 1, **conversation}

    def import_(self, user_id: str | None, document: dict[str, Any]) -> dict[str, Any]:
        """A copy of an exported conversation, every branch included, under new ids."""
        if document.get("format") != "autan-conversation":
            raise Invalid("not an autan conversation export (its 'format' is not 'autan-conversation')")
        messages = document.get("messages")
        if not isinstance(messages, list):
            raise Invalid("the export has no 'messages' list")
        settings = {
            k: document[k] for k in ("model", "system_prompt", "temperature", "top_p", "max_tokens") if k in document
        }
        with self.session() as db:
            conversation = Conversation(
                user_id=user_id, title=str(document.get("title") or "Imported chat")[:200], **_settings(settings)
            )
            conversation.safe_prompt = bool(document.get("safe_prompt", False))
            db.add(conversation)
            db.flush()
            ids: dict[str, str] = {}
            for m in messages:  # parents come before their children in an export
                if m.get("role") not in ROLES:
                    raise Invalid(f"message role '{m.get('role')}' must be one of {', '.join(ROLES)}")
                parent = m.get("parent_id")
                if parent is not None and parent not in ids:
                    raise Invalid(f"message {m.get('id')} comes before its parent {parent}")
                row = Message(
                    conversation_id=conversation.id,
                    parent_id=ids.get(parent) if parent else None,
                    role=m["role"],
                    content=str(m.get("content", "")),
                    status=m.get("status") if m.get("status") in STATUSES else "complete",
                    model=str(m.get("model", "")),
                    stats=m.get("stats"),
                )
                db.add(row)
                db.flush()
                ids[m.get("id", row.id)] = row.id
            leaf = document.get("current_leaf_id")
            conversation.current_leaf_id = ids.get(leaf) if leaf else (list(ids.values())[-1] if ids else None)
            return self._full(conversation)

    # users -------------------------------------------------------------------------------------

    def create_user(self, username: str, password: str) -> str:
        if not (3 <= len(username) <= 64) or not username.isprintable():
            raise Invalid(f"a username must have 3 to 64 printable characters, got {len(username)}")
        if len(password) < 8:
            raise Invalid(f"a password must have at least 8 characters, got {len(password)}")
        with self.session() as db:
            if db.scalar(select(User).where(User.username == username)) is not None:
                raise Invalid(f"the username '{username}' is taken")
            user = User(username=username, password_hash=hash_password(password))
            db.add(user)
            db.flush()
            return user.id

    def login(self, username: str, password: str) -> str | None:
        """A new session token, or None when the name or password is wrong."""
        with self.session() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None or not check_password(password, user.password_hash):
                return None
            token = secrets.token_urlsafe(32)
            db.add(Session(token=token, user_id=user.id))
            return token

    def user_for(self, token: str) -> tuple[str, str] | None:
        with self.session() as db:
            session = db.get(Session, token)
            if session is None:
                return None
            user = db.get(User, session.user_id)
            return (user.id, user.username) if user else None

    def logout(self, token: str) -> None:
        with self.session() as db:
            session = db.get(Session, token)
            if session is not None:
                db.delete(session)

    # helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _owned(db: DBSession, user_id: str | None, conversation_id: str) -> Conversation:
        conversation = db.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user_id:  # another user's is as good as absent
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conversation

    @staticmethod
    def _full(conversation: Conversation) -> dict[str, Any]:
        return {
            **_conversation_summary(conversation),
            **conversation.settings(),
            "current_leaf_id": conversation.current_leaf_id,
            "messages": [_message(m) for m in conversation.messages],
        }


def _settings(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "model" or key == "system_prompt":
            out[key] = str(value)
        elif key == "temperature":
            if not 0 <= float(value) <= 2:
                raise Invalid(f"temperature={value} must be between 0 and 2")
            out[key] = float(value)
        elif key == "top_p":
            if not 0 < float(value) <= 1:
                raise Invalid(f"top_p={value} must be in (0, 1]")
            out[key] = float(value)
        elif key == "max_tokens":
            if value is not None and int(value) < 1:
                raise Invalid(f"max_tokens={value} must be at least 1")
            out[key] = None if value is None else int(value)
        elif key == "safe_prompt":
            out[key] = bool(value)
        elif key == "title":
            out[key] = str(value)[:200]
        else:
            raise Invalid(f"unknown conversation setting '{key}'")
    return out


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands datetimes back without their zone."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _conversation_summary(c: Conversation) -> dict[str, Any]:
    return {"id": c.id, "title": c.title, "created_at": _iso(c.created_at), "updated_at": _iso(c.updated_at)}


def _message(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "parent_id": m.parent_id,
        "role": m.role,
        "content": m.content,
        "status": m.status,
        "model": m.model,
        "stats": m.stats,
        "created_at": _iso(m.created_at),
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def hash_password(password: str) -> str:
    """scrypt with a random salt: `scrypt$n$r$p$salt$hash`."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2)
