"""The models one server process serves, each with its own engine, by the id clients ask for."""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autan import registry
from autan.engine.async_engine import AsyncEngine
from autan.engine.engine import Engine, EngineConfig
from autan.errors import AutanError
from autan.other_tools import disk_size
from autan.store.accounts import Principal
from autan.tokenizer import MistralCommonTokenizer, Tokenizer, load_tokenizer
from autan.weights.gguf_reader import stored_quantization


@dataclass
class ServedModel:
    id: str
    engine: AsyncEngine
    tokenizer: Tokenizer
    path: Path
    created: int = field(default_factory=lambda: int(time.time()))
    default_temperature: float = 0.7  # for requests that leave temperature out: the file's recommendation
    quantization: str = ""  # how the weights are stored: a GGUF file type ("Q4_1"), a dtype, or --quantize
    size_bytes: int = 0  # the checkpoint on disk, measured at load
    admitting: int = 0  # requests past the queue check, on their way into the engine (counted as waiting)
    adapter: str | None = None  # a LoRA adapter the engine runs this model's requests through
    base: str = ""  # for an adapter: the id of the model it adapts
    owner: str | None = None  # the user id of the account whose fine-tuning job made it; None: everyone's

    @functools.cached_property
    def tokenizer_max_token_bytes(self) -> int:
        """The most UTF-8 bytes one token can stand for (an upper bound), for refusing a text that
        cannot fit the context before tokenizing it."""
        return getattr(self.tokenizer, "max_token_bytes", 1024)

    @property
    def context(self) -> int:
        return self.engine.engine.max_seq_len

    @property
    def fim(self) -> bool:
        encode_fim = getattr(self.tokenizer, "encode_fim", None)
        if encode_fim is None:
            return False
        try:
            encode_fim("a", "b")
        except Exception:  # mistral-common refuses FIM on tokenizers without its tokens, each its own way
            return False
        return True

    @property
    def tools(self) -> bool:
        """Whether the model can call functions: its chat template teaches a call format autan reads."""
        if isinstance(self.tokenizer, MistralCommonTokenizer):
            return self.tokenizer.raw.version.value != "v1"
        return getattr(self.tokenizer, "tool_format", None) is not None

    def with_adapter(self, name: str, path: Path, owner: str | None = None) -> ServedModel:
        """This model through the LoRA adapter at `path`, served as `<id>:<name>` on the same engine
        (so its requests share batches with the base model's and other adapters'), to `owner`'s
        account alone when one is named."""
        from autan.model.lora import load_adapter

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise AutanError(f"adapter name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        self.engine.engine.add_adapter(name, load_adapter(path, name))
        return dataclasses.replace(self, id=f"{self.id}:{name}", path=Path(path), adapter=name, base=self.id,
                                   size_bytes=disk_size(Path(path)), admitting=0, owner=owner)  # fmt: skip

    def visible_to(self, who: Principal) -> bool:
        """Whether `who` may see and use this model: an account's fine-tune is its own (and the admin's)."""
        return self.owner is None or who.admin or who.user_id == self.owner

    def card(self) -> dict[str, Any]:
        """The model as `GET /v1/models` describes it (Mistral's model card, which OpenAI clients read too)."""
        if self.adapter is not None:
            return {**self._card(), "type": "fine-tuned", "root": self.base, "adapter": self.adapter,
                    "description": f"{self.base} with the LoRA adapter {self.path.name}, served by autan"}  # fmt: skip
        return self._card()

    def _card(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "autan",
            "name": self.id,
            "description": f"{self.path.name}, served by autan",
            "max_context_length": self.context,
            "aliases": [],
            "default_model_temperature": self.default_temperature,
            # beyond Mistral's card, as Ollama's /api/tags gives them: the chat app's model picker shows them
            "parameters": self.engine.engine.model.config.parameters,
            "quantization": self.quantization,
            "size_bytes": self.size_bytes,
            "type": "base",
            "capabilities": {
                "completion_chat": getattr(self.tokenizer, "template", True) is not None,
                "completion_fim": self.fim,
                "function_calling": self.tools,
                "fine_tuning": self.adapter is None,  # the server has the fine-tuning API
                "vision": False,
                "classification": False,
            },
        }


def load_served(
    spec: str,
    config: EngineConfig | None = None,
    quantize: str | None = None,
    mmap: bool = True,
    device: str = "cpu",
    ranks: tuple[int, int] | None = None,
    kernels: str = "packed",
) -> ServedModel:
    """A model from `name`, `path`, or `id=name-or-path` (to choose the id clients use).

    `quantize`, `mmap`, `device`, `ranks` (this is rank 0 of a model split over ranks) and
    `kernels` as in `autan.load_model`."""
    from autan.weights import load_model

    model_id, target = spec_target(spec)
    path = registry.resolve(target)
    named = not Path(target).expanduser().exists()  # a registry or store name, not a path: clients use it
    model_id = model_id or (target if named else path.stem if path.is_file() else path.name)
    tokenizer = load_tokenizer(path)
    model = load_model(path, device, quantize=quantize, mmap=mmap, ranks=ranks, kernels=kernels)
    engine = Engine(model, tokenizer, config)
    temperature = registry.recommended_sampling(path).get("temperature", 0.7)
    stored = quantize or stored_quantization(path, engine.model.dtype)
    return ServedModel(
        model_id,
        AsyncEngine(engine),
        tokenizer,
        path,
        default_temperature=temperature,
        quantization=stored,
        size_bytes=disk_size(path),
    )


def spec_target(spec: str) -> tuple[str, str]:
    """`id=name-or-path` as (id, name or path); the id is empty where the spec names none."""
    model_id, _, target = spec.rpartition("=")
    return model_id, target
