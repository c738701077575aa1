"""The shape of a model, read from any of the three checkpoint formats.

`ModelConfig` says what the weights are; how they are run (device, dtype, batch, memory) is the
engine's business. Field names follow Mistral's `params.json`; see REFERENCE.md for the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from autan.errors import CheckpointError, UnsupportedModelError

HF_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM")
GGUF_ARCHITECTURES = ("llama", "qwen2")


MAX_CONTEXT = 2**24  # tokens: 16M, past every model's; a header claiming more is refused


@dataclass(frozen=True)
class MoeConfig:
    num_experts: int
    num_experts_per_tok: int


@dataclass(frozen=True)
class ModelConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    vocab_size: int
    norm_eps: float
    rope_theta: float
    max_seq_len: int
    sliding_window: int | None = None
    moe: MoeConfig | None = None
    tie_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: q, k and v maps add a bias

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{f.name}={value!r} must be a positive integer")
            if f.type == "float" and (not isinstance(value, float | int) or value <= 0):
                raise ValueError(f"{f.name}={value!r} must be a positive number")
        for name, most in (("max_seq_len", MAX_CONTEXT), ("vocab_size", 2**24)):
            if getattr(self, name) > most:
                raise ValueError(f"{name}={getattr(self, name)} is more than any model has (at most {most})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.sliding_window is not None and (not isinstance(self.sliding_window, int) or self.sliding_window < 1):
            raise ValueError(f"sliding_window={self.sliding_window} must be a positive number of tokens")
        if self.moe and not 0 < self.moe.num_experts_per_tok <= self.moe.num_experts:
            raise ValueError(f"num_experts_per_tok={self.moe.num_experts_per_tok} must be in 1..{self.moe.num_experts}")

    @property
    def parameters(self) -> int:
        """How many weights the model has, counted from its shape as transformers counts them
        (a tied output matrix once), whatever format or quantization they are stored in."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attention = self.dim * (q + 2 * kv) + q * self.dim + ((q + 2 * kv) if self.qkv_bias else 0)
        ffn = 3 * self.dim * self.hidden_dim
        if self.moe:
            ffn = self.moe.num_experts * ffn + self.dim * self.moe.num_experts  # experts and router
        layer = attention + ffn + 2 * self.dim  # and its two norms
        embeddings = self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return embeddings + self.n_layers * layer + self.dim

    @classmethod
    def from_params_json(cls, path: str | Path) -> ModelConfig:
        """Mistral's own `params.json`."""
        with _invalid_values(path):
            return cls._from_params_json(path)

    @classmethod
    def _from_params_json(cls, path: str | Path) -> ModelConfig:
        params = _read_json(path)
        window = _one_sliding_window(path, params.get("sliding_window"))
        theta = params.get("rope_theta")
        if theta is None:  # Mistral's tools disagree here; 7B v0.1 (windowed) used 1e4, later models 1e6.
            theta = 1e4 if window else 1e6
        moe = params.get("moe")
        return cls(
            dim=_need(path, params, "dim"),
            n_layers=_need(path, params, "n_layers"),
            n_heads=_need(path, params, "n_heads"),
            n_kv_heads=params.get("n_kv_heads", params["n_heads"]),
            head_dim=params.get("head_dim") or params["dim"] // params["n_heads"],
            hidden_dim=_need(path, params, "hidden_dim"),
            vocab_size=_need(path, params, "vocab_size"),
            norm_eps=params.get("norm_eps", 1e-5),
            rope_theta=float(theta),
            max_seq_len=params.get("max_seq_len") or params.get("max_position_embeddings") or 32768,
            sliding_window=window,
            moe=MoeConfig(moe["num_experts"], moe["num_experts_per_tok"]) if moe else None,
            tie_embeddings=bool(params.get("tied_embeddings", False)),
        )

    @classmethod
    def from_hf_config(cls, path: str | Path) -> ModelConfig:
        """A Hugging Face `config.json` of a Llama, Mistral, Mixtral or Qwen2 causal LM."""
        with _invalid_values(path):
            return cls._from_hf_config(path)

    @classmethod
    def _from_hf_config(cls, path: str | Path) -> ModelConfig:
        hf = _read_json(path)
        archs = hf.get("architectures") or []
        if not any(a in HF_ARCHITECTURES for a in archs):
            raise UnsupportedModelError(path, f"architectures {archs} is not one of {list(HF_ARCHITECTURES)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise UnsupportedModelError(path, f"hidden_act '{hf['hidden_act']}' is not supported (only 'silu')")
        mixtral, qwen2 = "MixtralForCausalLM" in archs, "Qwen2ForCausalLM" in archs
        if hf.get("attention_bias") and not qwen2:  # Llama's flag puts a bias on o too
            raise UnsupportedModelError(path, "attention_bias: biases on every attention map are not supported")
        if qwen2 and hf.get("use_sliding_window"):
            raise UnsupportedModelError(
                path,
                "use_sliding_window: Qwen2's window on some layers is not supported (the released models leave it off)",
            )
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise UnsupportedModelError(path, f"rope_type '{rope_type}' is not supported (only 'default')")
        # Missing keys take transformers' defaults for the family.
        theta = rope.get("rope_theta", hf.get("rope_theta", 1e6 if mixtral else 1e4))
        n_heads = _need(path, hf, "num_attention_heads")
        # Llama (and Qwen2 without use_sliding_window) ignores a `sliding_window` key; Mistral and
        # Mixtral apply it when it is set.
        ignored = "LlamaForCausalLM" in archs or qwen2
        window = None if ignored else hf.get("sliding_window", None if mixtral else 4096)
        moe = None
        if "num_local_experts" in hf:
            moe = MoeConfig(hf["num_local_experts"], hf["num_experts_per_tok"])
        return cls(
            dim=_need(path, hf, "hidden_size"),
            n_layers=_need(path, hf, "num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            hidden_dim=_need(path, hf, "intermediate_size"),
            vocab_size=_need(path, hf, "vocab_size"),
            norm_eps=hf.get("rms_norm_eps", 1e-5 if mixtral else 1e-6),
            rope_theta=float(theta),
            max_seq_len=hf.get("max_position_embeddings", 4096),
            sliding_window=window,
            moe=moe,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=qwen2,
        )

    @classmethod
    def from_gguf_metadata(cls, path: str | Path, meta: Mapping[str, Any], tensor_names: set[str]) -> ModelConfig:
        """GGUF key/values (llama.cpp's names), as read by `autan.weights.gguf`."""
        with _invalid_values(path):
            return cls._from_gguf_metadata(path, meta, tensor_names)

    @classmethod
    def _from_gguf_metadata(cls, path: str | Path, meta: Mapping[str, Any], tensor_names: set[str]) -> ModelConfig:
        arch = meta.get("general.architecture")
        if arch not in GGUF_ARCHITECTURES:
            raise UnsupportedModelError(path, f"general.architecture '{arch}' is not one of {list(GGUF_ARCHITECTURES)}")

        def key(name: str, default: Any = ...) -> Any:
            full = f"{arch}.{name}"
            if full in meta:
                return meta[full]
            if default is ...:
                raise CheckpointError(path, f"metadata key '{full}' is missing")
            return default

        scaling = key("rope.scaling.type", "none")
        if scaling != "none":
            raise UnsupportedModelError(path, f"rope scaling '{scaling}' is not supported (only unscaled RoPE)")
        n_heads = int(key("attention.head_count"))
        dim = int(key("embedding_length"))
        vocab = key("vocab_size", None) or len(meta.get("tokenizer.ggml.tokens", ()))
        if not vocab:
            raise CheckpointError(path, f"neither '{arch}.vocab_size' nor 'tokenizer.ggml.tokens' is present")
        n_experts = int(key("expert_count", 0) or 0)
        qkv_bias = "blk.0.attn_q.bias" in tensor_names
        if qkv_bias and arch == "llama":  # its converter permutes q/k rows, and would their biases
            raise UnsupportedModelError(path, "q/k/v biases in a 'llama' GGUF are not supported (Qwen2's are 'qwen2')")
        return cls(
            dim=dim,
            n_layers=int(key("block_count")),
            n_heads=n_heads,
            n_kv_heads=int(key("attention.head_count_kv", n_heads)),
            head_dim=int(key("attention.key_length", None) or key("rope.dimension_count", None) or dim // n_heads),
            hidden_dim=int(key("feed_forward_length")),
            vocab_size=int(vocab),
            norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(key("rope.freq_base", 1e4)),
            max_seq_len=int(key("context_length", 4096)),
            sliding_window=int(key("attention.sliding_window", 0) or 0) or None,
            moe=MoeConfig(n_experts, int(key("expert_used_count"))) if n_experts else None,
            tie_embeddings="output.weight" not in tensor_names,
            qkv_bias=qkv_bias,
        )


def check_layout(config: ModelConfig, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """The config against the tensors a file holds (model names -> shapes), before anything is
    built from it: a header that claims 10^9 layers, or a width its tensors do not have, is
    refused here instead of growing memory or failing deep inside torch."""
    layers = {int(m[1]) for name in shapes if (m := _LAYER.match(name))}
    counted = len(layers) == config.n_layers and (not layers or max(layers) == config.n_layers - 1)
    if not counted:  # (never a range of n_layers: that is what a lying header would make us build)
        whole = layers == set(range(len(layers)))
        found = f"layers 0..{max(layers)}" if whole and layers else f"{len(layers)} layers"
        raise CheckpointError(source, f"the config says {config.n_layers} layers, but the file has tensors for {found}")
    embed = shapes.get("model.embed_tokens.weight")
    if embed is not None and tuple(embed) != (config.vocab_size, config.dim):
        raise CheckpointError(
            source,
            f"the config says vocab_size {config.vocab_size} and dim {config.dim}, but the embedding has shape "
            f"{list(embed)}",
            "model.embed_tokens.weight",
        )
    attention = "model.layers.0.self_attn."
    for name, heads in (("q_proj", config.n_heads), ("k_proj", config.n_kv_heads)):
        shape = shapes.get(f"{attention}{name}.weight")
        if shape is not None and tuple(shape) != (heads * config.head_dim, config.dim):
            raise CheckpointError(
                source,
                f"has shape {list(shape)}, but the config's {heads} heads of {config.head_dim} over dim "
                f"{config.dim} need {[heads * config.head_dim, config.dim]}",
                f"{attention}{name}.weight",
            )


_LAYER = re.compile(r"model\.layers\.(\d+)\.")


@contextmanager
def _invalid_values(path: str | Path) -> Iterator[None]:
    """Name the file when a value in it is missing, of the wrong type, or inconsistent."""
    try:
        yield
    except CheckpointError:
        raise
    except KeyError as e:
        raise CheckpointError(path, f"required field {e} is missing") from None
    except (ValueError, TypeError, AttributeError, ZeroDivisionError) as e:
        raise CheckpointError(path, f"invalid model configuration: {e}") from None


def _read_json(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def _need(path: str | Path, d: Mapping[str, Any], name: str) -> Any:
    if name not in d:
        raise CheckpointError(path, f"required field '{name}' is missing")
    return d[name]


def _one_sliding_window(path: str | Path, window: int | list[int] | None) -> int | None:
    """params.json may give one window per layer; this core supports one window for all."""
    if isinstance(window, list):
        if len(set(window)) != 1:
            raise UnsupportedModelError(path, f"per-layer sliding windows {window} are not supported")
        window = window[0]
    return window or None
