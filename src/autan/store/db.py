"""Conversations kept in a database: SQLite (WAL) in autan's data directory by default, or any
SQLAlchemy URL (PostgreSQL at scale). The schema is brought up to date by Alembic on open, so an
upgrade never loses history. Accounts, sessions and API keys live beside them (`accounts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, or_, select, text
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker

from autan import registry
from autan.store.accounts import Accounts
from autan.store.documents import ROLES, STATUSES, ConversationDocument, Settings, Stats
from autan.store.errors import Conflict, Invalid, NotFound
from autan.store.tables import Conversation, Message, now

__all__ = ["Conflict", "Invalid", "NotFound", "Store", "default_url"]
MIGRATIONS = Path(__file__).parent / "migrations"


def default_url() -> str:
    return f"sqlite:///{registry.home() / 'autan.db'}"


# the key of the PostgreSQL advisory lock that servers starting together on one database take
# in turn while they bring its schema up to date (any number, the same in every autan)
MIGRATION_LOCK = 0x6175_7461_6E00


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # replicas started at once: one migrates, the next finds it done
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
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
        self.accounts = Accounts(self._sessions)

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
                stats=_stats(stats),
            )
            db.add(message)
            db.flush()
            conversation.current_leaf_id = message.id
            conversation.updated_at = now()
            return _message(message)

    def update_message(self, user_id: str | None, message_id: str, **changes: Any) -> dict[str, Any]:
        """Change a message's content, status or stats (a streaming answer is saved as it grows).

        Growth (content without a status) only applies while the message is streaming: a late
        partial save can never overwrite the final one."""
        with self.session() as db:
            message = db.get(Message, message_id)
            if message is None or message.conversation.user_id != user_id:  # another's is as good as absent
                raise NotFound(f"message {message_id} does not exist")
            if changes.get("status") is not None and changes["status"] not in STATUSES:
                raise Invalid(f"status '{changes['status']}' must be one of {', '.join(STATUSES)}")
            if changes.get("status") is None and message.status != "streaming" and changes.get("content") is not None:
                raise Conflict(f"message {message_id} is {message.status}: only a streaming answer grows")
            if changes.get("stats") is not None:
                changes["stats"] = _stats(changes["stats"])
            for key in ("content", "status", "stats"):
                if key in changes and changes[key] is not None:
                    setattr(message, key, changes[key])
            message.conversation.updated_at = now()
            return _message(message)

    # export / import ---------------------------------------------------------------------------

    def export(self, user_id: str | None, conversation_id: str) -> dict[str, Any]:
        conversation = self.get_conversation(user_id, conversation_id)
        return {"format": "autan-conversation", "version": 1, **conversation}

    def import_(self, user_id: str | None, document: ConversationDocument | dict[str, Any]) -> dict[str, Any]:
        """A copy of an exported conversation, every branch included, under new ids."""
        if isinstance(document, dict):
            if document.get("format") != "autan-conversation":
                raise Invalid("not an autan conversation export (its 'format' is not 'autan-conversation')")
            document = ConversationDocument.model_validate(document)
        with self.session() as db:
            conversation = Conversation(
                user_id=user_id,
                title=document.title.strip()[:200] or "Imported chat",
                **_settings({k: getattr(document, k) for k in ("model", "system_prompt", "temperature", "top_p")}),
                max_tokens=document.max_tokens,
                safe_prompt=document.safe_prompt,
            )
            db.add(conversation)
            db.flush()
            ids: dict[str, str] = {}
            for m in document.messages:  # the document is a checked tree: parents first, ids unique
                row = Message(
                    conversation_id=conversation.id,
                    parent_id=ids[m.parent_id] if m.parent_id else None,
                    role=m.role,
                    content=m.content,
                    status=m.status,
                    model=m.model,
                    stats=m.stats.model_dump(exclude_none=True) if m.stats else None,
                )
                db.add(row)
                db.flush()
                ids[m.id] = row.id
            leaf = document.current_leaf_id
            conversation.current_leaf_id = ids[leaf] if leaf else (list(ids.values())[-1] if ids else None)
            return self._full(conversation)

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
    """Settings as the columns hold them; the routes have already checked them (`documents.Settings`),
    direct callers get the same limits here."""
    try:
        checked = Settings.model_validate(values)
    except ValueError as e:
        raise Invalid(str(e)) from None
    out = checked.model_dump(exclude_unset=True, exclude={"current_leaf_id"})
    if "title" in out:
        out["title"] = str(out["title"])[:200]
    return {k: v for k, v in out.items() if v is not None or k == "max_tokens"}


def _stats(value: Stats | dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return Stats.model_validate(value).model_dump(exclude_none=True)
    except ValueError as e:
        raise Invalid(f"stats: {e}") from None


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
        "stats": Stats.read(m.stats),
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
