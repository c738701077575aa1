"""Request bodies of the HTTP API: Mistral's fields, with OpenAI's spellings accepted and mapped.

Validation lives here, in pydantic fields, so every bad value is refused with its name and the
limit before anything reaches the engine. Fields only OpenAI knows, and that autan has no use
for, are accepted and ignored (`extra="allow"`), as clients send them unasked.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Mistral's documented guardrail prompt, put before the conversation by `safe_prompt: true`.
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
    "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity."
)

Temperature = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class TextChunk(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextChunk] | None = None
    prefix: bool = False
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(chunk.text for chunk in self.content)
        return self.content or ""

    def to_engine(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role  # OpenAI's newer name for system
        out: dict[str, Any] = {"role": role, "content": self.text()}
        if self.prefix:
            out["prefix"] = True
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name and role == "tool":
            out["name"] = self.name
        return out


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class SamplingFields(BaseModel):
    """What every generation endpoint shares."""

    model_config = ConfigDict(extra="allow")

    model: str
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None  # OpenAI's newer name
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    ignore_eos: bool = False  # vLLM's and llama.cpp's extension: generate to max_tokens whatever the model says
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    random_seed: Annotated[int, Field(ge=0)] | None = None
    seed: int | None = None  # OpenAI's name for random_seed
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    n: Annotated[int, Field(ge=1, le=16)] = 1

    @model_validator(mode="after")
    def _stops_are_not_empty(self) -> SamplingFields:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        if len(stops) > 16:
            raise ValueError(f"stop has {len(stops)} strings; at most 16 are allowed")
        return self

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def token_limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def seed_value(self) -> int | None:
        return self.random_seed if self.random_seed is not None else self.seed


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[Message], Field(min_length=1)]
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    safe_prompt: bool = False
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    @model_validator(mode="after")
    def _prefix_only_last(self) -> ChatCompletionRequest:
        for i, m in enumerate(self.messages):
            if m.prefix and (i != len(self.messages) - 1 or m.role != "assistant"):
                raise ValueError("only the last message, an assistant message, may have prefix: true")
        return self

    def engine_messages(self) -> list[dict[str, Any]]:
        messages = [m.to_engine() for m in self.messages]
        if self.safe_prompt:
            if messages[0]["role"] == "system":
                messages[0] = {**messages[0], "content": f"{SAFE_PROMPT}\n\n{messages[0]['content']}"}
            else:
                messages.insert(0, {"role": "system", "content": SAFE_PROMPT})
        return messages


class CompletionRequest(SamplingFields):
    """OpenAI's legacy text completion: the prompt is raw text, no chat format."""

    prompt: str | list[str] | list[int]
    max_tokens: Annotated[int, Field(ge=1)] | None = 16  # OpenAI's default for this endpoint
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    suffix: str | None = None


class FIMCompletionRequest(SamplingFields):
    prompt: str
    suffix: str | None = ""
