"""Models already on disk in other tools' stores (Ollama, LM Studio, the Hugging Face cache),
laid out as those tools lay them out in temporary directories: listed, run by name where they
are, and never removed by `autan rm`, which removes only what autan pulled."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autan import other_tools, registry

pytestmark = pytest.mark.default_model


@pytest.fixture(scope="module")
def gguf() -> Path:
    return registry.pull("smollm2", quiet=True)


def ollama_store(root: Path, gguf: Path) -> Path:
    """Ollama's layout: a manifest per name and tag, layers by digest, blobs named by digest."""
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / f"sha256-{digest}").symlink_to(gguf)  # a blob is the GGUF file itself

    def manifest(path: str, model_digest: str) -> None:
        layers = [
            {"mediaType": "application/vnd.ollama.image.model", "digest": model_digest, "size": 1},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 1},
        ]
        target = root / "manifests" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))

    manifest("registry.ollama.ai/library/smol/latest", f"sha256:{digest}")
    manifest("registry.ollama.ai/someone/smol-copy/q4", f"sha256:{digest}")
    manifest("registry.ollama.ai/library/gone/latest", "sha256:" + "1" * 64)  # its blob was removed
    manifest("registry.ollama.ai/library/escape/latest", "sha256:../../../etc/passwd")  # not a digest
    manifest("registry.ollama.ai/library/escape2/latest", "../../../../tmp/x:abc")  # nor this
    (root / "manifests" / "registry.ollama.ai" / "library" / "broken").mkdir(parents=True)
    (root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest").write_text("{not json")
    return root


@pytest.fixture
def stores_env(tmp_path, gguf, monkeypatch):
    """Fake stores of all three tools, and an empty autan home, for this process and its children."""
    ollama = ollama_store(tmp_path / "ollama", gguf)
    lmstudio = tmp_path / "lmstudio"
    (lmstudio / "someone" / "SmolLM2-GGUF").mkdir(parents=True)
    (lmstudio / "someone" / "SmolLM2-GGUF" / "smol.Q4_1.gguf").symlink_to(gguf)
    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--someone--smol" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "smol.Q4_1.gguf").symlink_to(gguf)
    (hub / "models--someone--smol" / "refs").mkdir()
    (hub / "models--someone--smol" / "refs" / "main").write_text("abc123")
    env = {
        "OLLAMA_MODELS": str(ollama),
        "LMSTUDIO_MODELS": str(lmstudio),
        "HF_HUB_CACHE": str(hub),
        "AUTAN_HOME": str(tmp_path / "autan"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def autan(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autan.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_each_store_is_read_as_its_tool_writes_it(stores_env, gguf):
    found = {m.name: m for m in other_tools.stored_models()}
    assert set(found) == {
        "ollama:smol:latest",
        "ollama:someone/smol-copy:q4",
        "lmstudio:someone/SmolLM2-GGUF/smol.Q4_1.gguf",
        "hf:someone/smol:smol.Q4_1.gguf",
    }  # not the manifest whose blob is gone, nor those whose digests walk out, nor the broken one
    assert {m.source for m in found.values()} == {"ollama", "lm studio", "hugging face cache"}
    assert all(m.path.resolve() == gguf.resolve() and m.size == gguf.stat().st_size for m in found.values())
    assert other_tools.find("smol").name == "ollama:smol:latest"  # Ollama's own name, and its latest tag
    assert other_tools.find("smol:latest").name == "ollama:smol:latest"
    assert other_tools.find("hf:someone/smol:smol.Q4_1.gguf") is not None
    assert other_tools.find("nothing-here") is None


def test_list_shows_them_and_run_takes_their_names(stores_env):
    listed = autan(stores_env, "list")
    assert listed.returncode == 0, listed.stderr
    for name, source in (("ollama:smol:latest", "ollama"), ("lmstudio:someone/SmolLM2-GGUF", "lm studio")):
        line = next(line for line in listed.stdout.splitlines() if line.startswith(name))
        assert source in line and "llama 30x576" in line
    run = autan(stores_env, "run", "smol", "What is the capital of France?", "--temperature", "0", "--max-tokens", "30")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout


def test_rm_removes_only_what_autan_pulled(stores_env, gguf):
    refused = autan(stores_env, "rm", "ollama:smol:latest")
    assert refused.returncode == 1 and "Ollama's store" in refused.stderr and "ollama rm" in refused.stderr
    assert other_tools.find("ollama:smol:latest").path.exists()
    pulled = registry.local_path("smollm2")
    pulled.parent.mkdir(parents=True)
    pulled.write_bytes(gguf.read_bytes())
    removed = autan(stores_env, "rm", "smollm2")
    assert removed.returncode == 0, removed.stderr
    assert not pulled.exists() and gguf.exists()
    again = autan(stores_env, "rm", "smollm2")
    assert again.returncode == 1 and "is not pulled" in again.stderr
