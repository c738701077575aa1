"""LoRA adapters on the model's linear maps, many at once.

An adapter adds `scale * B (A x)` to a map's output (A: r x in, B: out x r). Adapters are loaded
into numbered slots (0 is the base model), and each token row of a forward pass names its slot,
so requests for different adapters share one batch (as vLLM's multi-LoRA does): the base product
runs once for every row, then each adapter's low-rank product for its own rows.

The files are PEFT's (`adapter_config.json` + `adapter_model.safetensors`), so an adapter trained
by peft on transformers loads here, and one trained here loads in peft. Parameter names are
Hugging Face's (the model's own), e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.

The runtime is here too: `Rows` (each row's slot, shared by every map of a model) and
`LinearLora` (one map's adapters, which `Linear` calls after its own product).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autan.errors import AutanError
from autan.model.layers import Linear

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PREFIX = "base_model.model."
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"


class Rows:
    """Which slot each token row of the current forward pass uses, shared by every adapted map:
    `value` is None (all the base model), one slot for every row, or a (N,) tensor of slots;
    `groups` are the rows of each slot, found once a pass rather than once a map."""

    def __init__(self) -> None:
        self.value: int | Tensor | None = None
        self.groups: list[tuple[str, Tensor]] = []

    def set(self, value: int | Tensor | None) -> None:
        self.value = value
        self.groups = []
        if isinstance(value, Tensor):
            slots, inverse = value.unique(return_inverse=True)
            order = inverse.argsort(stable=True)
            counts = torch.bincount(inverse, minlength=len(slots)).tolist()
            self.groups = [(str(s), i) for s, i in zip(slots.tolist(), order.split(counts), strict=True) if s != 0]


class LinearLora(nn.Module):
    """The adapters of one linear map, by slot."""

    def __init__(self, rows: Rows, dropout: float = 0.0):
        super().__init__()
        self.rows = rows
        self.a = nn.ParameterDict()  # slot -> (r, in)
        self.b = nn.ParameterDict()  # slot -> (out, r)
        self.scales: dict[str, float] = {}
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def add(self, slot: int, a: Tensor, b: Tensor, scale: float, trainable: bool = False) -> None:
        self.a[str(slot)] = nn.Parameter(a, requires_grad=trainable)
        self.b[str(slot)] = nn.Parameter(b, requires_grad=trainable)
        self.scales[str(slot)] = scale

    def remove(self, slot: int) -> None:
        for table in (self.a, self.b):
            if str(slot) in table:
                del table[str(slot)]
        self.scales.pop(str(slot), None)

    def delta(self, x: Tensor, slot: str) -> Tensor:
        a, b = self.a[slot].to(x.dtype), self.b[slot].to(x.dtype)
        return (self.dropout(x) @ a.t() @ b.t()) * self.scales[slot]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rows = self.rows.value
        if rows is None:
            return y
        if isinstance(rows, int):
            return y + self.delta(x, str(rows)) if str(rows) in self.a else y
        for slot, index in self.rows.groups:
            if slot in self.a:
                y = y.index_add(0, index, self.delta(x[index], slot))
        return y


class AdapterError(AutanError):
    """An adapter that cannot be used on this model, and why."""


@dataclass
class AdapterConfig:
    """The LoRA hyper-parameters PEFT's `LoraConfig` saves (those that change the computation)."""

    r: int = 8
    lora_alpha: float = 16
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lora_dropout: float = 0.0
    use_rslora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    base_model_name_or_path: str = ""

    def _pattern(self, patterns: dict[str, Any], module: str, default: Any) -> Any:
        # PEFT's rule: a key matches a module whose name ends with it, at a dot
        for key, value in patterns.items():
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        return default

    def rank(self, module: str) -> int:
        return int(self._pattern(self.rank_pattern, module, self.r))

    def scale(self, module: str) -> float:
        r, alpha = self.rank(module), float(self._pattern(self.alpha_pattern, module, self.lora_alpha))
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def to_peft(self) -> dict[str, Any]:
        """adapter_config.json as PEFT writes it (the fields it needs to load the adapter)."""
        return {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model_name_or_path,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": sorted(self.target_modules),
            "bias": "none",
            "fan_in_fan_out": False,
            "use_rslora": self.use_rslora,
            "use_dora": False,
            "init_lora_weights": True,
            "modules_to_save": None,
            "rank_pattern": self.rank_pattern,
            "alpha_pattern": self.alpha_pattern,
            "inference_mode": True,
        }


def read_config(path: Path) -> AdapterConfig:
    where = path / CONFIG_FILE
    try:
        raw = json.loads(where.read_text())
    except FileNotFoundError:
        raise AdapterError(f"{path} is not a LoRA adapter: it has no {CONFIG_FILE}") from None
    except ValueError as e:
        raise AdapterError(f"{where} is not valid JSON: {e}") from None
    refused = [
        (raw.get("peft_type", "LORA") != "LORA", f"peft_type {raw.get('peft_type')!r}: only LORA is supported"),
        (bool(raw.get("use_dora")), "use_dora: DoRA adapters are not supported"),
        (raw.get("bias", "none") != "none", f"bias {raw.get('bias')!r}: only 'none' is supported"),
        (bool(raw.get("modules_to_save")), f"modules_to_save {raw.get('modules_to_save')}: not supported"),
        (bool(raw.get("fan_in_fan_out")), "fan_in_fan_out: only transformers' Linear layout is supported"),
    ]
    for bad, why in refused:
        if bad:
            raise AdapterError(f"{where}: {why}")
    targets = raw.get("target_modules") or ()
    return AdapterConfig(
        r=int(raw.get("r", 8)),
        lora_alpha=float(raw.get("lora_alpha", 8)),
        target_modules=(targets,) if isinstance(targets, str) else tuple(targets),
        lora_dropout=float(raw.get("lora_dropout") or 0.0),
        use_rslora=bool(raw.get("use_rslora", False)),
        rank_pattern=dict(raw.get("rank_pattern") or {}),
        alpha_pattern=dict(raw.get("alpha_pattern") or {}),
        base_model_name_or_path=str(raw.get("base_model_name_or_path") or ""),
    )


@dataclass
class Adapter:
    """An adapter's matrices by module (`model.layers.0.self_attn.q_proj`): (A, B, scale)."""

    name: str
    config: AdapterConfig
    maps: dict[str, tuple[Tensor, Tensor, float]]


def load_adapter(path: str | Path, name: str | None = None) -> Adapter:
    """A PEFT LoRA adapter directory, checked for what this model can apply."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    config = read_config(path)
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise AdapterError(f"{path} has no {WEIGHTS_FILE} (an adapter saved with safe_serialization=False?)")
    tensors = load_file(str(weights_file))
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        found = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if not found:
            raise AdapterError(f"{weights_file}: tensor {key!r} is not a LoRA A or B matrix (only those are supported)")
        pairs.setdefault(found.group(1), {})[found.group(2)] = value
    maps = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"{weights_file}: {module} has lora_{next(iter(ab))} without its other half")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{weights_file}: {module} has A {tuple(a.shape)} and B {tuple(b.shape)}: not a pair")
        maps[module] = (a, b, config.scale(module))
    if not maps:
        raise AdapterError(f"{weights_file} holds no LoRA matrices")
    return Adapter(name or path.name, config, maps)


def save_adapter(path: str | Path, config: AdapterConfig, maps: dict[str, tuple[Tensor, Tensor]]) -> Path:
    """Write an adapter in PEFT's format: it loads with `PeftModel.from_pretrained`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in maps.items():
        tensors[f"{PREFIX}{module}.lora_A.weight"] = a.detach().float().contiguous().cpu()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = b.detach().float().contiguous().cpu()
    partial = path / (WEIGHTS_FILE + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    partial.replace(path / WEIGHTS_FILE)
    (path / CONFIG_FILE).write_text(json.dumps(config.to_peft(), indent=2) + "\n")
    return path


def module_table(model: nn.Module) -> dict[str, nn.Module]:
    """The linear maps an adapter may target, by their Hugging Face name."""
    return {
        name: m for name, m in model.named_modules() if isinstance(m, Linear) and name.rsplit(".", 1)[-1] in TARGETS
    }


def attach(model: nn.Module, adapter: Adapter, slot: int, trainable: bool = False) -> None:
    """Put `adapter` into `slot` of `model` (a `Transformer`), checked against its shapes."""
    if slot < 1:
        raise ValueError(f"slot {slot} must be 1 or more (0 is the base model)")
    table = module_table(model)
    for module, (a, b, _) in adapter.maps.items():
        linear = table.get(module)
        if linear is None:
            known = ", ".join(TARGETS)
            raise AdapterError(f"adapter {adapter.name!r} targets {module}, which this model has no such map for "
                               f"(adapters may target {known} of a dense model)")  # fmt: skip
        out_features, in_features = linear.out_features, linear.in_features
        if a.shape[1] != in_features or b.shape[0] != out_features:
            raise AdapterError(
                f"adapter {adapter.name!r}: {module} is {out_features}x{in_features} in this model, but the adapter's "
                f"A is {tuple(a.shape)} and B {tuple(b.shape)} (trained on another base model?)"
            )
    rows = lora_rows(model)
    device = next(model.parameters()).device
    for module, (a, b, scale) in adapter.maps.items():
        linear = table[module]
        if linear.lora is None:
            linear.lora = LinearLora(rows, adapter.config.lora_dropout if trainable else 0.0)
        linear.lora.add(slot, a.float().to(device), b.float().to(device), scale, trainable)


def detach(model: nn.Module, slot: int) -> None:
    for linear in module_table(model).values():
        if linear.lora is not None:
            linear.lora.remove(slot)


def lora_rows(model: nn.Module) -> Rows:
    """The model's shared row-to-slot holder (made on first use)."""
    rows = getattr(model, "_lora_rows", None)
    if rows is None:
        rows = Rows()
        model._lora_rows = rows
    return rows


def new_adapter(model: nn.Module, config: AdapterConfig, seed: int) -> Adapter:
    """A fresh adapter for training, initialised as PEFT does: A Kaiming-uniform (a=sqrt(5)), B zero."""
    generator = torch.Generator().manual_seed(seed)
    maps = {}
    for module, linear in module_table(model).items():
        if module.rsplit(".", 1)[-1] not in config.target_modules:
            continue
        r = config.rank(module)
        bound = 1 / math.sqrt(linear.in_features)  # kaiming_uniform_(a=sqrt(5)) on (r, in)
        a = (torch.rand(r, linear.in_features, generator=generator) * 2 - 1) * bound
        maps[module] = (a, torch.zeros(linear.out_features, r), config.scale(module))
    if not maps:
        raise AdapterError(
            f"target modules {', '.join(config.target_modules)} match no map (known: {', '.join(TARGETS)})"
        )
    return Adapter("new", config, maps)
