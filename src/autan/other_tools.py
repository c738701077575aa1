"""Models already on disk in other tools' stores, found and run where they are (never copied).

- Ollama: `$OLLAMA_MODELS` (default `~/.ollama/models`) holds `manifests/HOST/NAMESPACE/MODEL/TAG`,
  JSON manifests whose `application/vnd.ollama.image.model` layer names a blob by digest, a GGUF
  file at `blobs/sha256-HEX`. Named as Ollama names them: `llama3.2:1b` for its own library,
  `NAMESPACE/MODEL:TAG` otherwise, `ollama:` in front to say where to look.
- LM Studio: `~/.lmstudio/models/PUBLISHER/REPO/FILE.gguf` (older versions: `~/.cache/lm-studio/
  models`), or `$LMSTUDIO_MODELS`. Named `lmstudio:PUBLISHER/REPO/FILE.gguf`.
- The Hugging Face cache: `$HF_HUB_CACHE` (or `$HF_HOME/hub`, default `~/.cache/huggingface/hub`)
  holds `models--OWNER--REPO/snapshots/REVISION/...`. A snapshot's GGUF files are named
  `hf:OWNER/REPO:FILE`, a snapshot with a config.json and safetensors `hf:OWNER/REPO`.

Only autan's own directory is ever written to (`autan rm`); these stores are read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # the only digests a blob is named by
OLLAMA_LIBRARY = ("registry.ollama.ai", "library")


@dataclass(frozen=True)
class StoredModel:
    name: str  # what `autan run NAME` takes
    path: Path  # a GGUF file, or a checkpoint directory
    source: str  # "ollama", "lm studio", "hugging face cache"

    @property
    def size(self) -> int:
        return disk_size(self.path)


def disk_size(path: Path) -> int:
    """Bytes of a model file, or of every file in a checkpoint directory; 0 where unreadable."""
    try:
        return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def ollama_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def lmstudio_roots() -> list[Path]:
    if os.environ.get("LMSTUDIO_MODELS"):
        return [Path(os.environ["LMSTUDIO_MODELS"])]
    return [Path.home() / ".lmstudio" / "models", Path.home() / ".cache" / "lm-studio" / "models"]


def hf_cache_root() -> Path:
    """Where huggingface_hub keeps its cache, found as it finds it (its `constants`)."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.environ[key]).expanduser()
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return Path(os.environ.get("HF_HOME") or xdg / "huggingface").expanduser() / "hub"


def ollama_models(root: Path | None = None) -> Iterator[StoredModel]:
    """Each manifest of the store whose model layer's blob is present."""
    root = root or ollama_root()
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        try:
            layers = json.loads(manifest.read_text()).get("layers") or []
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
            continue  # not a model manifest we can read: not listed
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):  # nothing that walks out of blobs/
            continue
        blob = root / "blobs" / digest.replace(":", "-")
        if not blob.is_file():
            continue
        if (host, namespace) == OLLAMA_LIBRARY:
            name = f"{model}:{tag}"
        elif host == OLLAMA_LIBRARY[0]:
            name = f"{namespace}/{model}:{tag}"
        else:
            name = f"{host}/{namespace}/{model}:{tag}"
        yield StoredModel(f"ollama:{name}", blob, "ollama")


def lmstudio_models(roots: list[Path] | None = None) -> Iterator[StoredModel]:
    for root in roots or lmstudio_roots():
        if not root.is_dir():
            continue
        for gguf in sorted(root.glob("*/*/*.gguf")):
            if gguf.is_file():
                yield StoredModel(f"lmstudio:{gguf.relative_to(root).as_posix()}", gguf, "lm studio")


def hf_cache_models(root: Path | None = None) -> Iterator[StoredModel]:
    """The newest snapshot (by `refs/main`, else the only one) of each cached model repository."""
    root = root or hf_cache_root()
    if not root.is_dir():
        return
    for repo in sorted(root.glob("models--*--*")):
        owner, _, name = repo.name.removeprefix("models--").partition("--")
        snapshot = _snapshot(repo)
        if snapshot is None:
            continue
        for gguf in sorted(snapshot.rglob("*.gguf")):
            if gguf.is_file():
                yield StoredModel(
                    f"hf:{owner}/{name}:{gguf.relative_to(snapshot).as_posix()}", gguf, "hugging face cache"
                )
        if (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors")):
            yield StoredModel(f"hf:{owner}/{name}", snapshot, "hugging face cache")


def _snapshot(repo: Path) -> Path | None:
    ref = repo / "refs" / "main"
    try:
        if ref.is_file():
            revision = ref.read_text().strip()
            snapshot = repo / "snapshots" / revision
            return snapshot if re.fullmatch(r"[0-9a-f]{40}|[0-9a-zA-Z]{1,64}", revision) and snapshot.is_dir() else None
        snapshots = [p for p in (repo / "snapshots").glob("*") if p.is_dir()]
    except (OSError, UnicodeDecodeError):  # unreadable: not listed
        return None
    return snapshots[0] if len(snapshots) == 1 else None


def stored_models() -> list[StoredModel]:
    return [*ollama_models(), *lmstudio_models(), *hf_cache_models()]


def find(name: str) -> StoredModel | None:
    """The stored model called `name`: its full name (`ollama:llama3.2:1b`), or an Ollama name
    without the prefix (`llama3.2:1b`, and `llama3.2` for its `latest` tag)."""
    models = stored_models()
    for candidate in (name, f"ollama:{name}", f"ollama:{name}:latest"):
        found = next((m for m in models if m.name == candidate), None)
        if found is not None:
            return found
    return None
