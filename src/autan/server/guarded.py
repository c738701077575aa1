"""A chat request run under the server's rails, for the API shapes that answer in their own words
(Anthropic's Messages, OpenAI's Responses): the input rail before anything is generated, the
output rail over a whole answer. (`/v1/chat/completions` checks its stream as it goes: app.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from autan.engine.output import Completion
from autan.guard.policy import GuardPolicy
from autan.guard.rails import GuardRails, OutputWatch, Verdict, conversation_texts, last_user_turn
from autan.http.errors import APIError
from autan.server.generation import Generation, until_disconnected
from autan.server.schemas import ChatCompletionRequest


@dataclass
class Guarded:
    """One request's generation and the rails' policy for it; `refused` when the input rail
    flagged the prompt (then nothing was started)."""

    generation: Generation
    policy: GuardPolicy | None
    messages: list[dict[str, Any]]
    refused: Verdict | None = None

    @property
    def checks_output(self) -> bool:
        return self.policy is not None and self.policy.output


async def start(
    request: Request,
    rails: GuardRails,
    generation: Generation,
    chat: ChatCompletionRequest,
    tools: list[dict] | None,
    max_waiting: int,
    **constraint: Any,
) -> Guarded:
    """Check the prompt, then queue the generation (`constraint`: `grammar` or `schema`)."""
    served = generation.served
    if getattr(served.tokenizer, "template", True) is None:
        raise APIError(400, f"model '{served.id}' has no chat template: send it text through /v1/completions")
    messages = chat.engine_messages()
    guarded = Guarded(generation, rails.for_request(chat.guardrails), messages)
    texts = [t for t in conversation_texts(messages) if t.strip()]
    if guarded.policy is not None and guarded.policy.input and texts:
        guarded.refused = await rails.check(guarded.policy, generation.served, "input", texts)
        if guarded.refused is not None:
            return guarded
    work = generation.start(
        chat,
        max_waiting=max_waiting,
        encode=lambda: served.tokenizer.encode_chat(messages, tools=tools),
        text_bytes=sum(len(m["content"].encode()) for m in messages),
        **constraint,
    )
    await until_disconnected(request, work)
    return guarded


async def output_verdict(rails: GuardRails, guarded: Guarded, done: Completion) -> Verdict | None:
    """The output rail's verdict on a whole answer (None: it passes, or no output rail)."""
    if not guarded.checks_output:
        return None
    watch = OutputWatch(rails, guarded.policy, guarded.generation.served, last_user_turn(guarded.messages), 1)
    watch.feed(0, done.text, done.usage.completion_tokens)
    return await watch.finish(0)


def chat_request(fields: dict[str, Any]) -> ChatCompletionRequest:
    """Another API's request as a chat request; what that refuses is the client's mistake (400)."""
    try:
        return ChatCompletionRequest.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise APIError(400, f"the request cannot be run: {problems}") from None
