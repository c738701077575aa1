"""`POST /v1/embeddings` in OpenAI's and Mistral's shapes: texts (or token ids of the encoder's
own vocabulary) in, one vector each out, as floats or as base64 of little-endian float32 (what
OpenAI's SDK asks for by default). The encoders are autan.embeddings'; the packaged one,
`all-minilm-l6-v2`, is loaded on its first request.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autan.embeddings import PACKAGED, Embedder, EmbeddingInputError, load_embedder
from autan.errors import AutanError
from autan.http.errors import APIError
from autan.text import clean

MAX_INPUTS = 2048  # OpenAI's limit per request
Text = Annotated[str, Field(max_length=1_000_000)]
Ids = Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1, max_length=100_000)]
Input = (
    Text
    | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    | Ids
    | Annotated[list[Ids], Field(min_length=1, max_length=MAX_INPUTS)]
)


router = APIRouter()  # under /v1, behind `v1_caller` (app.py)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(max_length=256)]
    input: Input | None = None
    inputs: Input | None = None  # Mistral's older name for it
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None  # OpenAI's
    output_dimension: Annotated[int, Field(ge=1)] | None = None  # Mistral's
    output_dtype: Literal["float"] | None = None  # Mistral's quantized outputs are not offered

    @model_validator(mode="after")
    def _one_input(self) -> EmbeddingRequest:
        if (self.input is None) == (self.inputs is None):
            raise ValueError("give the texts to embed as input (or Mistral's inputs), once")
        return self

    def items(self) -> list[str | list[int]]:
        given = self.input if self.input is not None else self.inputs
        if isinstance(given, str) or (isinstance(given, list) and isinstance(given[0], int)):
            return [given]  # type: ignore[list-item]
        return list(given)  # type: ignore[arg-type]


class Embedders:
    """The encoders a server offers, by id; the packaged one loads on first use."""

    def __init__(self, loaded: Sequence[Embedder] = (), packaged: Callable[[], Embedder] | None = None):
        self.loaded = {e.id: e for e in loaded}
        self.packaged = packaged if packaged is not None else functools.cache(lambda: load_embedder(PACKAGED))

    @property
    def ids(self) -> list[str]:
        return [*self.loaded, *([PACKAGED] if PACKAGED not in self.loaded else [])]

    def get(self, name: str) -> Embedder:
        if name in self.loaded:
            return self.loaded[name]
        if name == PACKAGED:
            return self.packaged()
        shown = name if len(name) <= 100 else name[:100] + "..."
        message = f"no embedding model '{shown}' here; embedding models: {', '.join(self.ids)}"
        raise APIError(404, message, param="model")

    def cards(self) -> list[dict[str, Any]]:
        capabilities = {"completion_chat": False, "completion_fim": False, "function_calling": False,
                        "fine_tuning": False, "vision": False, "classification": False, "embeddings": True}  # fmt: skip
        about = {"object": "model", "created": 0, "owned_by": "autan", "type": "base", "aliases": [],
                 "description": "a sentence encoder, for /v1/embeddings", "capabilities": capabilities}  # fmt: skip
        return [{"id": name, "name": name, **about} for name in self.ids]


async def embedders(request: Request) -> Embedders:
    """The app's encoders, read off its `Server` (not imported: `state.py` imports this module)."""
    return request.app.state.server.embedders


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, encoders: Annotated[Embedders, Depends(embedders)]) -> dict:
    encoder = await asyncio.to_thread(encoders.get, body.model)  # (the packaged one loads on first use)
    wanted = body.dimensions or body.output_dimension
    if wanted is not None and wanted != encoder.dimensions:
        message = f"{encoder.id} gives {encoder.dimensions} dimensions, not {wanted} (its vectors are not cut)"
        raise APIError(400, message, param="dimensions")

    def work() -> tuple[list[list[int]], Any]:
        ids = [encoder.tokens(clean(x)) if isinstance(x, str) else x for x in body.items()]
        return ids, encoder.embed(ids)

    try:
        ids, vectors = await asyncio.to_thread(work)
    except EmbeddingInputError as e:
        raise APIError(400, str(e), param="input") from None
    except AutanError as e:
        raise APIError(400, f"{encoder.id}: {e}") from None
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    tokens = sum(len(x) + 2 for x in ids)  # with [CLS] and [SEP], as the encoder reads them
    return {"id": f"embd-{uuid.uuid4().hex}", "object": "list", "data": data, "model": encoder.id,
            "created": int(time.time()), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def _encoded(vector: Any, form: str) -> list[float] | str:
    if form == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
