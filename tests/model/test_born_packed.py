"""A model is born packed: every map gets its kernel once, as the loader reads it, and nothing
on the model is set, replaced or deleted after it is built. `autan inspect --maps` reports the
kernel each map holds, checked here map by map, on a checkpoint in every format."""

import pytest
import torch
from gguf import GGMLQuantizationType as Q

import autan
from autan import cli, native
from autan.kernels import Kernel
from autan.model.layers import Linear
from autan.model.moe import MoeFeedForward
from autan.model.transformer import Transformer
from checkpoints import hf_model, save_gguf, save_hf, save_mistral

NATIVE = native.module() is not None
PACKED = "native" if NATIVE else None  # the family GGML blocks take on this install (else: int4 or int8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("born")
    hf = {arch: save_hf(hf_model(arch, seed=3), root / arch) for arch in ("llama", "mixtral", "qwen2")}
    return {
        "hf": hf["llama"],
        "mistral": save_mistral(hf["llama"], root / "mistral-format"),
        "gguf-f16": save_gguf(hf["llama"], root / "f16.gguf", Q.F16),
        "gguf-q4_0": save_gguf(hf["llama"], root / "q4_0.gguf", Q.Q4_0),
        "gguf-k-mix": save_gguf(
            save_hf(hf_model("llama", seed=4, hidden_size=256, intermediate_size=256), root / "llama-k"),
            root / "k.gguf",
            Q.Q4_K,
            random_quant=True,
            qtypes={"attn_v": Q.Q6_K, "ffn_down": Q.Q5_K},
        ),
        "gguf-mixtral": save_gguf(hf["mixtral"], root / "mixtral.gguf", Q.Q8_0),
        "gguf-qwen2-tied": save_gguf(hf["qwen2"], root / "qwen2.gguf", Q.Q4_0),
    }


@pytest.fixture
def changes(monkeypatch):
    """Every attribute set or deleted on a built model's parts, from the end of the model's
    construction on (a module's `training` flag aside: `eval()` sets it)."""
    seen: list[tuple[str, str]] = []
    built: set[int] = set()
    kept: list[torch.nn.Module] = []  # alive, so that no later module takes a built one's id
    init, setattr_, delattr_ = Transformer.__init__, torch.nn.Module.__setattr__, torch.nn.Module.__delattr__

    def construct(self, *args, **kwargs):
        init(self, *args, **kwargs)
        kept.extend(self.modules())
        built.update(id(m) for m in self.modules())

    def watch_set(self, name, value):
        if id(self) in built and name != "training":
            seen.append((type(self).__name__, name))
        setattr_(self, name, value)

    def watch_del(self, name):
        if id(self) in built:
            seen.append((type(self).__name__, f"del {name}"))
        delattr_(self, name)

    monkeypatch.setattr(Transformer, "__init__", construct)
    monkeypatch.setattr(torch.nn.Module, "__setattr__", watch_set)
    monkeypatch.setattr(torch.nn.Module, "__delattr__", watch_del)
    return seen


CASES = [
    ("hf", {}, "dense"),
    ("hf", {"quantize": "int4"}, PACKED or "int4"),
    ("hf", {"quantize": "int8"}, PACKED or "int8"),
    ("mistral", {}, "dense"),
    ("gguf-f16", {}, "dense"),
    ("gguf-q4_0", {}, PACKED or "int4"),
    ("gguf-q4_0", {"kernels": "exact"}, "exact"),
    ("gguf-q4_0", {"kernels": "dense"}, "dense"),
    ("gguf-k-mix", {}, PACKED),
    ("gguf-mixtral", {}, PACKED or "int8"),
    ("gguf-mixtral", {"kernels": "exact"}, "exact"),
    ("gguf-qwen2-tied", {}, PACKED or "int4"),
    ("gguf-qwen2-tied", {"kernels": "exact"}, "exact"),
    ("gguf-qwen2-tied", {"kernels": "dense"}, "dense"),
]


@pytest.mark.parametrize("source, options, family", CASES, ids=lambda c: str(c) if not isinstance(c, dict) else
                         ",".join(f"{k}={v}" for k, v in c.items()) or "default")  # fmt: skip
def test_a_model_is_built_with_its_kernels_and_inspect_reports_each(files, changes, capsys, source, options,
                                                                     family):  # fmt: skip
    if family is None:
        pytest.skip("K-quant blocks go to PyTorch's int8 without the native kernels (covered in test_kernels)")
    model = autan.load_model(files[source], **options)
    assert changes == [], f"set after the model was built: {changes}"
    assert model.training is False

    linears = {name: m for name, m in model.named_modules() if isinstance(m, Linear)}
    maps = {name: m.kernel for name, m in linears.items()}
    for name, moe in ((n, m) for n, m in model.named_modules() if isinstance(m, MoeFeedForward)):
        for kind in ("gate", "up", "down"):
            maps |= {f"{name}.experts.{kind}.{e}": k for e, k in enumerate(getattr(moe.experts, kind))}
    assert all(isinstance(k, Kernel) for k in maps.values())
    routers = {name for name in linears if name.endswith("block_sparse_moe.gate")}
    for name, kernel in maps.items():
        want = family
        if name in routers:  # always multiplied as stored: a float matrix, or the file's blocks
            want = "dense" if family == "dense" else "exact"
        if name == "lm_head" and options.get("quantize") and not NATIVE:
            want = "int8"  # a quantized head is 8-bit
        assert kernel.family == want, (name, kernel.family, want)
    if model.config.tie_embeddings:  # the head multiplies by the embedding's matrix, or a packed copy of it
        embedding = model.model.embed_tokens.weight
        head = model.lm_head.kernel
        if head.family == "exact":
            assert head.blocks is embedding
        elif head.family == "dense":
            assert head.weight is embedding

    capsys.readouterr()
    flags = [f"--{k}={v}" for k, v in options.items()]
    assert cli.main(["inspect", str(files[source]), "--maps", *flags]) == 0
    reported = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  "):
            name, shape, kernel_family, _ = line.split()
            reported[name] = (kernel_family, shape)
    expected = {name: (k.family, f"{k.out_features}x{k.in_features}") for name, k in _named_kernels(model).items()}
    assert reported == expected and len(expected) == len(maps)


def _named_kernels(model):
    """The kernels as `autan inspect` names them: by their map (an expert's as `...experts.gate.3`)."""
    return {name.removesuffix(".kernel"): m for name, m in model.named_modules() if isinstance(m, Kernel)}
