"""The shapes the store accepts from outside: conversation settings, a message's stats, and the
export document that import reads back. Every field is typed and bounded here, so a bad value
is refused with its name before anything is written, and nothing stored can later fail to load.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from autan.text import clean

ROLES = ("system", "user", "assistant")
STATUSES = ("streaming", "complete", "stopped", "error")
MAX_INT = 2**31 - 1  # the database's integer column
MAX_MESSAGES = 10_000

CleanStr = Annotated[str, AfterValidator(clean)]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Number = Annotated[float, Field(allow_inf_nan=False, ge=0)]


class Stats(BaseModel):
    """What the app shows under an answer. Unknown keys are dropped, so nothing can nest."""

    model_config = ConfigDict(extra="ignore")

    tokens: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    tokens_per_second: Number | None = None
    first_token_seconds: Number | None = None
    finish_reason: Annotated[CleanStr, Field(max_length=32)] | None = None
    error: Annotated[CleanStr, Field(max_length=2000)] | None = None  # why the answer ended early, shown apart
    rail: Literal["input", "output"] | None = None  # a guardrail refused (input) or stopped (output) it
    categories: Annotated[list[Annotated[CleanStr, Field(max_length=64)]], Field(max_length=16)] | None = None

    @classmethod
    def read(cls, stored: Any) -> dict[str, Any] | None:
        """Stats from the database as the app gets them; what does not fit this shape is left out."""
        if not isinstance(stored, dict):
            return None
        try:
            return cls.model_validate(stored).model_dump(exclude_none=True)
        except ValidationError:
            return None


class Settings(BaseModel):
    """A conversation's settings; each field may be left out."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[CleanStr, Field(max_length=200)] | None = None
    model: Annotated[CleanStr, Field(max_length=200)] | None = None
    system_prompt: Annotated[CleanStr, Field(max_length=100_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    safe_prompt: bool | None = None
    current_leaf_id: Id | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent; null means "leave as is", except for max_tokens ("no limit")."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k == "max_tokens"}


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal[ROLES]  # type: ignore[valid-type]
    content: CleanStr = ""
    parent_id: Id | None = None
    status: Literal[STATUSES] = "complete"  # type: ignore[valid-type]
    model: Annotated[CleanStr, Field(max_length=200)] = ""
    stats: Stats | None = None


class MessageUpdate(BaseModel):
    """A streaming answer's growth (content alone) or its end (with a status and stats)."""

    model_config = ConfigDict(extra="forbid")

    content: CleanStr | None = None
    status: Literal[STATUSES] | None = None  # type: ignore[valid-type]
    stats: Stats | None = None


class ExportedMessage(NewMessage):
    model_config = ConfigDict(extra="ignore")  # an export also carries created_at

    id: Id


class ConversationDocument(BaseModel):
    """An export (`Store.export`), as import reads it back."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["autan-conversation"]
    version: Literal[1] = 1
    title: Annotated[CleanStr, Field(max_length=200)] = "Imported chat"
    model: Annotated[CleanStr, Field(max_length=200)] = ""
    system_prompt: Annotated[CleanStr, Field(max_length=100_000)] = ""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    safe_prompt: bool = False
    current_leaf_id: Id | None = None
    messages: Annotated[list[ExportedMessage], Field(max_length=MAX_MESSAGES)]

    @model_validator(mode="after")
    def _a_tree(self) -> ConversationDocument:
        seen: set[str] = set()
        for m in self.messages:  # parents come before their children in an export
            if m.id in seen:
                raise ValueError(f"message id {m.id} appears twice")
            if m.parent_id is not None and m.parent_id not in seen:
                raise ValueError(f"message {m.id} comes before its parent {m.parent_id} (or its parent is missing)")
            seen.add(m.id)
        if self.current_leaf_id is not None and self.current_leaf_id not in seen:
            raise ValueError(f"current_leaf_id {self.current_leaf_id} is not one of the messages")
        return self
