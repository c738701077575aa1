"""Request bodies of the HTTP API: Mistral's fields, with OpenAI's spellings accepted and mapped.

Validation lives here, in pydantic fields, so every bad value is refused with its name and the
limit before anything reaches the engine. Fields only OpenAI knows, and that autan has no use
for, are accepted and ignored (`extra="allow"`), as clients send them unasked.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from autan.engine.sampling import MAX_STOP_CHARS, MAX_STOPS, SamplingParams
from autan.text import clean

# Mistral's documented guardrail prompt, put before the conversation by `safe_prompt: true`.
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
    "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity."
)

Temperature = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Text = Annotated[str, AfterValidator(clean)]  # lone surrogates and NULs become U+FFFD (autan.text)
Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS), AfterValidator(clean)]
Tokens = Annotated[int, Field(ge=1, le=2**31 - 1)]


class TextChunk(BaseModel):
    type: Literal["text"]
    text: Text


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Text | list[TextChunk] | None = None
    prefix: bool = False
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: Text | None = None
    name: Text | None = None

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

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("response_format json_schema needs json_schema.schema")
        return self

    def schema_or_none(self) -> dict[str, Any] | None:
        """The schema to follow; None for any JSON object (`json_object`)."""
        return self.json_schema.schema_ if self.type == "json_schema" and self.json_schema else None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False
    continuous_usage_stats: bool = False  # vLLM's: usage so far in every chunk


class SamplingFields(BaseModel):
    """What every generation endpoint shares."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[Text, Field(max_length=256)]
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None  # OpenAI's newer name
    min_tokens: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    ignore_eos: bool = False  # vLLM's and llama.cpp's extension: generate to max_tokens whatever the model says
    stream: bool = False
    stream_options: StreamOptions | None = None
    # one string or a list; read as a list, so a bad value gets one error, not one per shape
    stop: (
        Annotated[list[Stop], BeforeValidator(lambda v: [v] if isinstance(v, str) else v), Field(max_length=MAX_STOPS)]
        | None
    ) = None
    random_seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None  # OpenAI's name for random_seed
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    n: Annotated[int, Field(ge=1, le=16)] = 1
    # autan's: run this request under the server's guard policy (or the default one) with true, or
    # without rails with false (where the policy allows); unset, as the server is started
    guardrails: bool | None = None

    @model_validator(mode="after")
    def _min_within_max(self) -> SamplingFields:
        limit = self.token_limit()
        if self.min_tokens and limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens={self.min_tokens} is more than max_tokens={limit}")
        return self

    def sampling(
        self, default_temperature: float, seed: int | None, logprobs: int | None, prompt_logprobs: int | None = None
    ) -> SamplingParams:
        """The engine's parameters for one choice."""
        return SamplingParams(
            temperature=default_temperature if self.temperature is None else self.temperature,
            top_p=self.top_p,
            max_tokens=self.token_limit(),
            stop=self.stops(),
            seed=seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            min_tokens=self.min_tokens or 0,
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )

    def stops(self) -> tuple[str, ...]:
        return tuple(self.stop or ())

    def token_limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def seed_value(self) -> int | None:
        seed = self.random_seed if self.random_seed is not None else self.seed
        return None if seed is None else seed % 2**63  # OpenAI's seed may be negative


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


TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
MAX_PROMPTS = 1024  # prompts in one /v1/completions request


class CompletionRequest(SamplingFields):
    """OpenAI's legacy text completion: the prompt is raw text, no chat format. One prompt, or a
    list of them (texts, or token-id lists): prompt k's choice j is choice k * n + j."""

    prompt: (
        Text
        | Annotated[list[Text], Field(max_length=MAX_PROMPTS)]
        | list[TokenId]
        | Annotated[list[list[TokenId]], Field(max_length=MAX_PROMPTS)]
    )
    # OpenAI's default for this endpoint; 0 only reads the prompt (with echo and logprobs: scores it)
    max_tokens: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = 16
    echo: bool = False  # with logprobs: the prompt's tokens are scored too (each given those before)
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    suffix: Text | None = None

    @property
    def scores_prompt(self) -> bool:
        return self.echo and self.logprobs is not None

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if self.scores_prompt and self.stream:
            raise ValueError("echo with logprobs (the prompt's scores) is answered whole: send stream: false")
        if self.echo and self.suffix:
            raise ValueError("echo cannot be combined with suffix (as in OpenAI's API)")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt is empty")
        if any(isinstance(p, list) and not p for p in self.prompts()):
            raise ValueError("a prompt of token ids is empty")
        if self.suffix and len(self.prompts()) != 1:
            raise ValueError(f"suffix fills in the middle of one prompt, not {len(self.prompts())}")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text, or token ids."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]


class FIMCompletionRequest(SamplingFields):
    prompt: Text
    suffix: Text | None = ""


class TokenizeRequest(BaseModel):
    """vLLM's `/tokenize` (llama-server's `content` is taken for `prompt` too); without `model`,
    the server's first model."""

    model: Annotated[Text, Field(max_length=256)] | None = None
    prompt: Annotated[Text, Field(max_length=1_000_000)] | None = None  # characters: about a second to split
    content: Annotated[Text, Field(max_length=1_000_000)] | None = None
    add_special_tokens: bool = True

    @model_validator(mode="after")
    def _one_text(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.content is None):
            raise ValueError("give the text as prompt (or content), once")
        return self

    @property
    def text(self) -> str:
        return self.prompt if self.prompt is not None else self.content or ""


class DetokenizeRequest(BaseModel):
    model: Annotated[Text, Field(max_length=256)] | None = None
    tokens: Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(max_length=1_000_000)]
