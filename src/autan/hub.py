"""`autan pull hf:OWNER/REPO[:FILE]`: a model from the Hugging Face Hub, with `huggingface_hub`.

Downloads go to the standard cache (`$HF_HUB_CACHE`, where `autan.other_tools` finds them again and
other tools share them), resume where an interrupted one stopped, show progress bars, and honour
`HF_ENDPOINT` (a mirror, or an offline hub) and `HF_TOKEN`. A repository is either one GGUF file
(named, or the only one there) or a checkpoint: config.json with safetensors and the tokenizer's
files, fetched without the rest (other formats, pictures, READMEs).
"""

from __future__ import annotations

import re
from pathlib import Path

from autan.errors import AutanError

REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CHECKPOINT_FILES = ["*.json", "tokenizer.model*", "tekken.json", "*.txt"]  # and the weights' safetensors


class HubError(AutanError, RuntimeError):
    pass


def parse(spec: str) -> tuple[str, str | None]:
    """`hf:OWNER/REPO[:FILE]` -> (repo id, file or None), the repo id checked."""
    repo, _, filename = spec.removeprefix("hf:").partition(":")
    if not REPO.match(repo) or ".." in repo:
        raise HubError(f"'{spec}' does not name a repository: expected hf:OWNER/REPO or hf:OWNER/REPO:FILE")
    if filename and (filename.startswith("/") or ".." in filename.split("/")):
        raise HubError(f"'{filename}' is not a file inside {repo}")
    return repo, filename or None


def pull(spec: str, quiet: bool = False) -> Path:
    """The local path of hf:OWNER/REPO[:FILE], downloaded (or resumed) into the cache first."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    repo, filename = parse(spec)
    if quiet:
        huggingface_hub.utils.disable_progress_bars()
    try:
        return _fetch(repo, filename)
    except (
        errors.HfHubHTTPError,
        errors.OfflineModeIsEnabled,
        errors.LocalEntryNotFoundError,
        errors.HFValidationError,
        *_transport_errors(),
        OSError,
    ) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HubError(f"could not fetch {spec} from {constants.ENDPOINT}: {message}") from None
    finally:
        if quiet:
            huggingface_hub.utils.enable_progress_bars()


def _fetch(repo: str, filename: str | None) -> Path:
    import huggingface_hub

    if filename is not None:
        return Path(huggingface_hub.hf_hub_download(repo, filename))
    files = huggingface_hub.list_repo_files(repo)
    shards = [f for f in files if f.endswith(".safetensors") and "/" not in f]
    if "config.json" in files and shards:
        # Hugging Face's weights only: a Mistral repository also holds consolidated.safetensors
        hf_shards = [f for f in shards if f.startswith("model")] or shards
        return Path(huggingface_hub.snapshot_download(repo, allow_patterns=CHECKPOINT_FILES + hf_shards))
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if len(ggufs) == 1:
        return Path(huggingface_hub.hf_hub_download(repo, ggufs[0]))
    if ggufs:
        shown = ", ".join(f"hf:{repo}:{f}" for f in ggufs[:8]) + (", ..." if len(ggufs) > 8 else "")
        raise HubError(f"{repo} holds {len(ggufs)} GGUF files; name one: {shown}")
    raise HubError(f"{repo} holds neither a GGUF file nor a checkpoint (config.json with safetensors)")


def _transport_errors() -> tuple[type[Exception], ...]:
    """The base error of the HTTP client huggingface_hub runs on: httpx, or httpx2 from its 2.x."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
