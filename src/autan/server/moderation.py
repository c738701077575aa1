"""`POST /v1/moderations` and `POST /v1/chat/moderations`, in Mistral's shapes (which the
`mistralai` SDK's `classifiers.moderate` and `moderate_chat` read) with OpenAI's `flagged` beside
them (which `openai.moderations.create` reads).

`model` chooses the moderator: the classifier (`autan-moderation`, or Mistral's and OpenAI's
names for theirs), or a served model's id for that model's self-reflection.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from autan.errors import AutanError
from autan.guard.classifier import Result
from autan.guard.moderators import Moderator
from autan.guard.rails import merge
from autan.http.errors import APIError
from autan.server.state import ServerDep

MAX_INPUTS = 128
Text = Annotated[str, Field(max_length=1_000_000)]

router = APIRouter()  # under /v1, behind `v1_caller` (app.py)


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, Field(max_length=200)] | None = None
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = "text"
    text: Text = ""


class ChatTurn(BaseModel):
    """A turn as chat completions take it: its content a string, or parts (of which the text ones
    are read)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: Text | Annotated[list[ContentPart], Field(max_length=1000)] | None = ""

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


Conversation = Annotated[list[ChatTurn], Field(min_length=1, max_length=1000)]


class ChatModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, Field(max_length=200)] | None = None
    input: Conversation | Annotated[list[Conversation], Field(min_length=1, max_length=MAX_INPUTS)]

    def conversations(self) -> list[list[ChatTurn]]:
        return [self.input] if isinstance(self.input[0], ChatTurn) else self.input  # type: ignore[list-item]


def last_turn_texts(conversation: list[ChatTurn]) -> list[str]:
    """The last turn, judged in its context: alone, and, for an answer, after the question it
    answers (what makes "Sure, step one..." harmful is what was asked)."""
    last = conversation[-1].text
    texts = [last]
    if conversation[-1].role == "assistant":
        asked = next((t.text for t in reversed(conversation[:-1]) if t.role == "user" and t.text), None)
        if asked:
            texts.append(f"{asked}\n\n{last}")
    return texts


def result_body(result: Result) -> dict[str, Any]:
    return {"categories": result.categories, "category_scores": result.category_scores, "flagged": result.flagged}


def envelope(model: str | None, moderator_name: str, results: list[Result]) -> dict[str, Any]:
    body = [result_body(r) for r in results]
    return {"id": f"modr-{uuid.uuid4().hex}", "model": model or moderator_name, "results": body}


async def moderate(moderator: Moderator, texts: list[str]) -> list[Result]:
    try:
        return await moderator.moderate(texts)
    except (AutanError, ValueError) as e:  # a self-reflecting model that cannot take the text
        raise APIError(400, f"moderation by {moderator.name} failed: {e}", param="input") from None


@router.post("/moderations")
async def moderations(body: ModerationRequest, request: Request, s: ServerDep) -> dict:
    moderator = s.rails.moderator(body.model, request.state.principal)
    return envelope(body.model, moderator.name, await moderate(moderator, body.texts()))


@router.post("/chat/moderations")
async def chat_moderations(body: ChatModerationRequest, request: Request, s: ServerDep) -> dict:
    moderator = s.rails.moderator(body.model, request.state.principal)
    readings = [last_turn_texts(c) for c in body.conversations()]
    flat = await moderate(moderator, [t for texts in readings for t in texts])  # one batch for them all
    results, at = [], 0
    for texts in readings:
        results.append(merge(flat[at : at + len(texts)]))
        at += len(texts)
    return envelope(body.model, moderator.name, results)
