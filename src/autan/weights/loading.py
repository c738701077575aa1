"""Loading a checkpoint into the model: Mistral's format, Hugging Face's, and GGUF."""

from __future__ import annotations

from pathlib import Path

import torch

from autan.config import ModelConfig, check_layout
from autan.kernels import check_quantize
from autan.model.parallel import Shard
from autan.model.transformer import Transformer
from autan.weights.assemble import assemble
from autan.weights.config_files import KERNELS, directory_kind
from autan.weights.gguf_file import GGUFFile
from autan.weights.safetensors_files import hf_entries, mistral_entries


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    kernels: str = "packed",
    quantize: str | None = None,
    mmap: bool = True,
    ranks: tuple[int, int] | None = None,
) -> Transformer:
    """Load a checkpoint directory (Mistral's or Hugging Face's) or a `.gguf` file.

    `dtype` is the compute dtype. By default it is the dtype the weights are stored in for
    safetensors/.pth checkpoints and float32 for GGUF. GGUF matrices stay as stored (quantized
    blocks, F16, BF16) unless `kernels` says otherwise: with "packed" (on a CPU) their linear
    maps are packed at load for the native kernels, or PyTorch's int4/int8 where those are not
    built; with "exact" they are unpacked to `dtype` at every use, which computes exactly what
    the reference computes; with "dense" they are unpacked once, at load (the same products,
    at four to eight times the memory). Each map gets its kernel as it is read
    (`autan.kernels.choose`); `autan inspect` shows which.

    `quantize` ("int8" or "int4") quantizes the dense (float) linear maps at load onto the same
    kernels, for float checkpoints on a CPU; docs/benchmarks.md gives its perplexity cost.

    `mmap=False` reads a GGUF file into memory instead of mapping it (for a file on slow or
    removable storage), where it stays, beside the packed copy; mapped, the pages of each
    matrix are released once it is packed.

    `ranks` (rank, world size) loads that rank's part of the model for tensor parallelism
    (`autan.model.parallel`), reading only that part of the file.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels='{kernels}' must be one of {', '.join(KERNELS)}")
    if quantize is not None:
        check_quantize(quantize)  # before the (long) load
    path, device = Path(path), _device(device)
    if quantize is not None and device.type != "cpu":
        raise ValueError(f"quantize='{quantize}' runs on PyTorch's CPU kernels; the device is {device}")
    shard_of = (lambda config: Shard.plan(config, *ranks)) if ranks else (lambda config: None)
    options = {"device": device, "kernels": kernels, "quantize": quantize}
    if path.is_file():
        gguf = GGUFFile.open(path, mmap=mmap)
        config = gguf.config()
        shard = shard_of(config)
        release = gguf.release_pages if kernels == "packed" and device.type == "cpu" else None
        model = assemble(config, list(gguf.entries(config, shard)), source=str(path), dtype=dtype or torch.float32,
                         keep_stored_dtype=True, shard=shard, release=release, **options)  # fmt: skip
        gguf.release_pages()
        return model
    kind = directory_kind(path)
    mistral = kind == "params.json"
    config = (ModelConfig.from_params_json if mistral else ModelConfig.from_hf_config)(path / kind)
    shard = shard_of(config)
    entries = list(mistral_entries(path, config, shard) if mistral else hf_entries(path, shard))
    check_layout(config, {e.name: e.stored_shape for e in entries}, str(path))
    stored = next((e.value.dtype for e in entries if e.value.ndim > 1), torch.float32)
    return assemble(config, entries, source=str(path), dtype=dtype or stored, keep_stored_dtype=False, shard=shard,
                    **options)  # fmt: skip


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for, but this torch build sees no CUDA GPU")
    return device
