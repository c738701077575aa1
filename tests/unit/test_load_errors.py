"""Every broken checkpoint gets an error naming the file, the tensor and what was expected."""

import json
import re
import shutil
import struct

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import autan
from autan import CheckpointError, UnsupportedModelError
from autan.weights import read_safetensors
from checkpoints import hf_model, hf_tensors, save_gguf, save_hf, save_mistral


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return save_hf(hf_model("mistral"), tmp_path_factory.mktemp("ckpt") / "hf")


def copy(hf_dir, tmp_path):
    return shutil.copytree(hf_dir, tmp_path / "copy")


def test_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere: no such file or directory"):
        autan.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither params.json .* nor config.json"):
        autan.load_model(tmp_path / "empty")


def test_missing_weights_file(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file not found"):
        autan.load_model(directory)


def test_wrong_shape_names_tensor_and_both_shapes(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    tensors = hf_tensors(directory)
    tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(95, 64)
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model.layers.1.mlp.up_proj.weight': has shape \[95, 64\], expected \[96, 64\]",
    ):
        autan.load_model(directory)


def test_missing_and_unexpected_tensors(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    tensors = hf_tensors(directory)
    del tensors["model.norm.weight"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\) the config needs: model.norm.weight"):
        autan.load_model(directory)
    tensors["model.norm.weight"] = torch.ones(64)
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.ones(64)
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="tensor 'model.layers.0.self_attn.q_proj.bias': unexpected tensor"):
        autan.load_model(directory)


def test_truncated_and_corrupt_safetensors(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors: not a readable safetensors file \(truncated or corrupt\?\)",
    ):
        autan.load_model(directory)
    path.write_bytes(b"\x07" * 100)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        autan.load_model(directory)


def test_sharded_index_names_the_missing_shard(hf_dir, tmp_path):
    directory = save_hf(hf_model("mistral"), tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[1]
    (directory / victim).unlink()
    with pytest.raises(CheckpointError, match=f"lists shard\\(s\\) that are not in the directory: \\['{victim}'\\]"):
        autan.load_model(directory)


def test_pth_with_pickled_code_is_refused(hf_dir, tmp_path):
    directory = save_mistral(hf_dir, tmp_path / "m", pth=True)
    torch.save(
        {"tok_embeddings.weight": torch.zeros(2), "payload": np.dtype("float32").type},
        directory / "consolidated.00.pth",
    )
    with pytest.raises(CheckpointError, match="not a loadable tensors-only .pth file"):
        autan.load_model(directory)


def test_mistral_format_wrong_rope_shape(hf_dir, tmp_path):
    directory = save_mistral(hf_dir, tmp_path / "m")
    tensors = dict(read_safetensors(directory / "consolidated.safetensors"))
    tensors["layers.0.attention.wk.weight"] = torch.zeros(30, 64)
    save_file(tensors, directory / "consolidated.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'layers.0.attention.wk.weight': has shape \[30, 64\], expected \[32, 64\]",
    ):
        autan.load_model(directory)


def test_truncated_gguf(hf_dir, tmp_path):
    path = save_gguf(hf_dir, tmp_path / "m.gguf")
    data = path.read_bytes()
    for cut in (len(data) - 1000, 200, 10):
        (tmp_path / "cut.gguf").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"cut\.gguf: .*(truncated|corrupt)"):
            autan.load_model(tmp_path / "cut.gguf")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("block_count", 10**9, "the config says 1000000000 layers, but the file has tensors for layers 0..1"),
        ("block_count", 1, "the config says 1 layers, but the file has tensors for layers 0..1"),
        ("attention.head_count", 0, "n_heads=0 must be a positive integer"),
        ("embedding_length", 2**40, "the config says vocab_size 128 and dim 1099511627776, but the embedding"),
        ("attention.head_count_kv", 1, "the config's 1 heads of 16 over dim 64 need [16, 64]"),
        ("context_length", 2**32 - 1, "max_seq_len=4294967295 is more than any model has (at most 16777216)"),
    ],
)
def test_a_gguf_header_is_checked_against_its_tensors_before_anything_is_built(hf_dir, tmp_path, key, value, message):
    """Finding 14: block_count 10^9 grew memory without bound; head_count 0 and embedding_length
    2^40 gave tracebacks. The header now has to agree with the tensor directory first."""
    path = save_gguf(hf_dir, tmp_path / "lying.gguf", metadata={key: value})
    with pytest.raises(CheckpointError, match=re.escape(message)):
        autan.load_model(path)


def test_a_gguf_tensor_off_its_alignment_is_refused(hf_dir, tmp_path):
    """Second probe: a tensor offset that is not a multiple of general.alignment loaded, and the
    model read its weights shifted (llama.cpp refuses such a file)."""
    path = save_gguf(hf_dir, tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    name = b"token_embd.weight"
    at = data.index(name) + len(name)  # then n_dims (u32), the dims (u64 each), the type (u32), the offset (u64)
    (n_dims,) = struct.unpack_from("<I", data, at)
    where = at + 4 + 8 * n_dims + 4
    (offset,) = struct.unpack_from("<Q", data, where)
    struct.pack_into("<Q", data, where, offset + 4)
    (tmp_path / "shifted.gguf").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tensor 'token_embd.weight' starts at offset \d+, not a multiple of"):
        autan.load_model(tmp_path / "shifted.gguf")


def test_gguf_unsupported_type_and_architecture(hf_dir, tmp_path):
    path = save_gguf(hf_dir, tmp_path / "q8_1.gguf", qtype=gguf.GGMLQuantizationType.Q8_1, random_quant=True)
    with pytest.raises(
        UnsupportedModelError,
        match=r"q8_1\.gguf: tensor '[\w.]+': type Q8_1 is not supported \(supported: F32, F16, BF16, Q8_0",
    ):
        autan.load_model(path)
    writer = gguf.GGUFWriter(tmp_path / "gpt2.gguf", "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        UnsupportedModelError, match=r"gpt2.gguf: general.architecture 'gpt2' is not one of \['llama', 'qwen2'\]"
    ):
        autan.load_model(tmp_path / "gpt2.gguf")


def test_bad_token_ids_and_device(hf_dir):
    model = autan.load_model(hf_dir)
    with pytest.raises(ValueError, match=r"token id 128 is outside the vocabulary 0\.\.127"):
        model.logits([1, 128])
    with pytest.raises(ValueError, match="token_ids is empty"):
        model.logits([])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' was asked for, but this torch build sees no CUDA GPU"):
            autan.load_model(hf_dir, device="cuda")


def test_bad_config_values_name_the_file(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    for key, value, message in [
        ("num_key_value_heads", 3, "n_heads=4 is not a multiple of n_kv_heads=3"),
        ("hidden_size", "64", "dim='64' must be a positive integer"),
        ("hidden_act", "gelu", "hidden_act 'gelu' is not supported"),
    ]:
        (directory / "config.json").write_text(json.dumps(config | {key: value}))
        with pytest.raises(CheckpointError, match=f"config.json: .*{message}"):
            autan.load_model(directory)


def test_malformed_index_and_quantized_vector(hf_dir, tmp_path):
    directory = copy(hf_dir, tmp_path)
    (directory / "model.safetensors.index.json").write_text('{"weight_map": {"x": 5}}')
    with pytest.raises(CheckpointError, match="'weight_map' must map tensor names to shard file names"):
        autan.load_model(directory)
    path = save_gguf(hf_dir, tmp_path / "q.gguf")
    reader = gguf.GGUFReader(path)
    writer = gguf.GGUFWriter(tmp_path / "qnorm.gguf", "llama")
    for field in reader.fields.values():
        if field.name.startswith("llama.") and field.types[0] != gguf.GGUFValueType.ARRAY:
            writer.add_key_value(field.name, field.contents(), field.types[0])
    for t in reader.tensors:
        data = np.asarray(t.data).reshape(tuple(reversed(t.shape.tolist())))
        if t.name == "blk.0.attn_norm.weight":
            writer.add_tensor(t.name, gguf.quants.quantize(data, Q8), raw_dtype=Q8)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="tensor 'blk.0.attn_norm.weight': is Q8_0-quantized, but a vector"):
        autan.load_model(tmp_path / "qnorm.gguf")


Q8 = gguf.GGMLQuantizationType.Q8_0
