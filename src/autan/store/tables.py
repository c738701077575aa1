"""The tables: users, their conversations, and messages that form a tree.

Every message has a parent (None for the first of a conversation). Editing a user message or
regenerating an answer adds a sibling instead of overwriting, so every branch stays; the
conversation remembers which leaf is shown.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from autan.text import clean


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


class CleanText(TypeDecorator):
    """Text that every database can hold: NULs and lone surrogates become U+FFFD (`autan.text`).

    Applied to every value bound to the column, in writes and in lookups alike."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return clean(value) if isinstance(value, str) else value


class CleanString(CleanText):
    impl = String
    cache_ok = True


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(CleanString(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(CleanString(64), unique=True)  # as typed, for display
    username_key: Mapped[str] = mapped_column(CleanString(64), unique=True)  # `accounts.username_key`: one per person
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Session(Base):
    """A signed-in browser. Only the token's SHA-256 is kept: a copy of the database signs nobody in."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(CleanString(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str | None] = mapped_column(CleanString(64), nullable=True)  # a key typed into the app
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ApiKey(Base):
    """A key made by an admin (`autan key add` or the app); only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(CleanString(32), primary_key=True, default=new_id)
    key_hash: Mapped[str] = mapped_column(CleanString(64), unique=True)
    name: Mapped[str] = mapped_column(CleanString(100), default="")
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(CleanString(32), primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(CleanString(200), default="New chat")
    model: Mapped[str] = mapped_column(CleanString(200), default="")
    system_prompt: Mapped[str] = mapped_column(CleanText, default="")
    temperature: Mapped[float] = mapped_column(Float, default=0.7)
    top_p: Mapped[float] = mapped_column(Float, default=1.0)
    max_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    safe_prompt: Mapped[bool] = mapped_column(Boolean, default=False)
    current_leaf_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", order_by="Message.created_at"
    )

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "safe_prompt": self.safe_prompt,
        }


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(CleanString(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=True)
    role: Mapped[str] = mapped_column(CleanString(16))
    content: Mapped[str] = mapped_column(CleanText, default="")
    status: Mapped[str] = mapped_column(CleanString(16), default="complete")  # streaming, complete, stopped, error
    # tokens, tok/s, first token, finish reason, error: `autan.store.db.Stats`
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model: Mapped[str] = mapped_column(CleanString(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class File(Base):
    """A file uploaded for fine-tuning; its bytes live in `$AUTAN_HOME/files/<id>.jsonl`."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    filename: Mapped[str] = mapped_column(CleanString(256))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    num_lines: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class FineTuningJob(Base):
    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    shape: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(CleanString(256))
    training_files: Mapped[list] = mapped_column(JSON)
    validation_files: Mapped[list] = mapped_column(JSON)
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    suffix: Mapped[str | None] = mapped_column(CleanString(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_tuned_model: Mapped[str | None] = mapped_column(CleanString(320), nullable=True)
    error: Mapped[str | None] = mapped_column(CleanText, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FineTuningEvent(Base):
    __tablename__ = "fine_tuning_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(CleanText)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class StoredResponse(Base):
    """A response of OpenAI's Responses API, kept for `previous_response_id` (its owner's alone)."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    body: Mapped[dict] = mapped_column(JSON)
    input_items: Mapped[list] = mapped_column(JSON)
    conversation: Mapped[list] = mapped_column(JSON)


class Batch(Base):
    """A batch of requests (OpenAI's /v1/batches or Mistral's /v1/batch/jobs); answers on disk."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    shape: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(CleanString(256), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(CleanText, nullable=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
