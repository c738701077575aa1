"""Our GGUF parser against gguf-py's reader (llama.cpp's own Python package): the same metadata,
tensor directory and bytes, on the default model and on files of every layout the tests write."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader

from autan import registry
from autan.errors import CheckpointError
from autan.weights.gguf_file import GGUFFile
from checkpoints import hf_model, save_gguf


def assert_same_as_gguf_py(path):
    ours = GGUFFile._open.__wrapped__(GGUFFile, path, 0, 0)
    reference = GGUFReader(path, "r")
    expected = {k: f.contents() for k, f in reference.fields.items() if not k.startswith("GGUF.")}
    assert ours.metadata == expected
    assert [t.name for t in ours.tensors] == [t.name for t in reference.tensors]
    for t, r in zip(ours.tensors, reference.tensors, strict=True):
        assert (t.tensor_type, list(t.shape), t.data_offset, t.n_bytes) == (
            r.tensor_type,
            r.shape.tolist(),
            r.data_offset,
            r.n_bytes,
        )
        assert np.array_equal(np.asarray(t.data), np.asarray(r.data).view(np.uint8).reshape(-1))


@pytest.mark.default_model
def test_the_default_model_reads_as_gguf_py_reads_it():
    assert_same_as_gguf_py(registry.pull("smollm2", quiet=True))


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_1], ids=lambda q: q.name)
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_written_files_read_as_gguf_py_reads_them(arch, qtype, tmp_path):
    hf_model(arch, seed=2).save_pretrained(tmp_path / "hf")
    path = save_gguf(tmp_path / "hf", tmp_path / "m.gguf", qtype)
    assert_same_as_gguf_py(path)


def test_a_truncated_header_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        GGUFFile.open(path)
    path.write_bytes(b"GGML" + bytes(40))
    with pytest.raises(CheckpointError, match="not b'GGUF'"):
        GGUFFile.open(path)


@pytest.mark.default_model
def test_reading_the_file_into_memory_gives_the_same_model():
    import torch

    import autan

    path = registry.pull("smollm2", quiet=True)
    mapped, read = GGUFFile.open(path), GGUFFile.open(path, mmap=False)
    assert isinstance(mapped.data, np.memmap) and not isinstance(read.data, np.memmap)
    tokens = torch.tensor([1, 9690, 198, 2683, 314])
    torch.testing.assert_close(
        autan.load_model(path, mmap=False).logits(tokens), autan.load_model(path).logits(tokens), rtol=0, atol=0
    )
