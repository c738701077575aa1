"""Loading a checkpoint into the model: Mistral's format, Hugging Face's, and GGUF."""

from __future__ import annotations

from pathlib import Path

import torch

from autan.config import ModelConfig, check_layout
from autan.model.parallel import Shard
from autan.model.transformer import Transformer
from autan.weights.assemble import assemble
from autan.weights.config_files import directory_kind
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
    safetensors/.pth checkpoints and float32 for GGUF. GGUF matrices always stay as stored
    (quantized blocks, F16, BF16). With `kernels="packed"` (on a CPU) their linear maps are packed
    at load for the native kernels, or PyTorch's int4/int8 where those are not built
    (`autan.weights.packing`); with `kernels="exact"` they are unpacked to `dtype` at every use,
    which computes exactly what the reference computes.

    `quantize` ("int8" or "int4") quantizes the dense (float) linear maps at load onto the same
    kernels, for float checkpoints on a CPU; docs/benchmarks.md gives its perplexity cost.

    `mmap=False` reads a GGUF file into memory instead of mapping it (for a file on slow or
    removable storage), where it stays, beside the packed copy; mapped, the pages of each
    matrix are released once it is packed.

    `ranks` (rank, world size) loads that rank's part of the model for tensor parallelism
    (`autan.model.parallel`), reading only that part of the file.
    """
    from autan.kernels import check_quantize
    from autan.weights.packing import quantize_model

    if kernels not in ("packed", "exact"):
        raise ValueError(f"kernels='{kernels}' must be 'packed' or 'exact'")
    if quantize is not None:
        check_quantize(quantize)  # before the (long) load
    path, device = Path(path), _device(device)
    if quantize is not None and device.type != "cpu":
        raise ValueError(f"quantize='{quantize}' runs on PyTorch's CPU kernels; the device is {device}")
    model = _load(path, device, dtype, kernels, mmap, ranks)
    if quantize is not None:
        quantize_model(model, quantize)
    return model


def _load(
    path: Path, device: torch.device, dtype: torch.dtype | None, kernels: str, mmap: bool, ranks: tuple[int, int] | None
) -> Transformer:
    from autan.weights.packing import pack_model

    if path.is_file():
        gguf = GGUFFile.open(path, mmap=mmap)
        config = gguf.config()
        shard = Shard.plan(config, *ranks) if ranks else None
        model = assemble(
            config,
            gguf.entries(config, shard),
            source=str(path),
            device=device,
            dtype=dtype or torch.float32,
            keep_stored_dtype=True,
            shard=shard,
        )
        if kernels == "packed" and device.type == "cpu":
            pack_model(model, release=gguf.release_pages)
            gguf.release_pages()
        return model
    kind = directory_kind(path)
    mistral = kind == "params.json"
    config = (ModelConfig.from_params_json if mistral else ModelConfig.from_hf_config)(path / kind)
    shard = Shard.plan(config, *ranks) if ranks else None
    entries = list(mistral_entries(path, config, shard) if mistral else hf_entries(path, shard))
    check_layout(config, {e.name: e.stored_shape for e in entries}, str(path))
    stored = next((e.value.dtype for e in entries if e.value.ndim > 1), torch.float32)
    return assemble(config, entries, source=str(path), device=device, dtype=dtype or stored, keep_stored_dtype=False,
                    shard=shard)  # fmt: skip


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for, but this torch build sees no CUDA GPU")
    return device
