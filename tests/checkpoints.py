"""Tiny random checkpoints in every format autan reads, made from one set of weights.

Hugging Face transformers builds and saves the reference model; the Mistral-format and GGUF
copies are written from its files through autan's inverse name maps and RoPE permutation, so
a loader bug and a writer bug would have to cancel exactly to go unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import save_file

from autan.weights import read_safetensors
from autan.weights.names import gguf_to_hf, interleaved_to_halves, is_rope_projection
from references import halves_to_interleaved, hf_to_gguf, hf_to_mistral

ARCHS = ("llama", "mistral", "mixtral")


def hf_model(arch: str, seed: int = 0, **overrides):
    """A small random transformers model: 2 layers, dim 64, GQA 4:2, head_dim 16."""
    import transformers

    torch.manual_seed(seed)
    common = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        common["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
        config = transformers.LlamaConfig(**(common | overrides))
        cls = transformers.LlamaForCausalLM
    elif arch == "mistral":
        config = transformers.MistralConfig(**(common | {"sliding_window": 8, "head_dim": 16} | overrides))
        cls = transformers.MistralForCausalLM
    elif arch == "mixtral":
        extra = {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None}
        config = transformers.MixtralConfig(**(common | extra | overrides))
        cls = transformers.MixtralForCausalLM
    elif arch == "qwen2":  # Llama with q/k/v biases; the released models tie their embeddings
        extra = {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}, "tie_word_embeddings": True}
        config = transformers.Qwen2Config(**(common | extra | overrides))
        cls = transformers.Qwen2ForCausalLM
    else:
        raise ValueError(arch)
    model = cls(config).eval()
    with torch.no_grad():  # transformers initialises norms to 1 and biases to 0; random ones test them too
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0, 0.5)
    return model


def save_hf(model, directory: Path, max_shard_size: str | None = None) -> Path:
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return directory


def hf_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved HF checkpoint by their on-disk names (per-expert for Mixtral)."""
    files = sorted(directory.glob("*.safetensors"))
    return {name: t for f in files for name, t in read_safetensors(f)}


def save_mistral(hf_dir: Path, directory: Path, pth: bool = False) -> Path:
    """Mistral's format: params.json + consolidated.safetensors (or .00.pth), RoPE rows interleaved."""
    cfg = json.loads((hf_dir / "config.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    params = {
        "dim": cfg["hidden_size"],
        "n_layers": cfg["num_hidden_layers"],
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
        "hidden_dim": cfg["intermediate_size"],
        "n_heads": cfg["num_attention_heads"],
        "n_kv_heads": cfg["num_key_value_heads"],
        "norm_eps": cfg["rms_norm_eps"],
        "vocab_size": cfg["vocab_size"],
        "rope_theta": cfg["rope_parameters"]["rope_theta"],
        "max_seq_len": cfg["max_position_embeddings"],
    }
    if cfg.get("sliding_window"):
        params["sliding_window"] = cfg["sliding_window"]
    if "num_local_experts" in cfg:
        params["moe"] = {
            "num_experts": cfg["num_local_experts"],
            "num_experts_per_tok": cfg["num_experts_per_tok"],
        }
    (directory / "params.json").write_text(json.dumps(params))
    tensors = {}
    for name, t in hf_tensors(hf_dir).items():
        if is_rope_projection(name):
            heads = params["n_heads"] if "q_proj" in name else params["n_kv_heads"]
            t = halves_to_interleaved(t, heads)
        tensors[hf_to_mistral(name)] = t.contiguous()
    if pth:
        torch.save(tensors, directory / "consolidated.00.pth")
    else:
        save_file(tensors, directory / "consolidated.safetensors")
    return directory


def random_blocks(qtype: Q, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random GGML blocks (finite scales) for a (rows, cols) matrix: uint8 (rows, bytes)."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows * cols // block, type_size), dtype=np.uint8)
    scale_offsets = {
        Q.Q8_0: [0], Q.Q8_1: [0, 2], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2],
        Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
    }  # fmt: skip
    magnitude = {
        Q.Q8_0: 1e-3, Q.Q8_1: 1e-3, Q.Q4_0: 1e-2, Q.Q4_1: 1e-2, Q.Q5_0: 5e-3, Q.Q5_1: 5e-3,
        Q.Q4_K: 1e-3, Q.Q5_K: 5e-4, Q.Q6_K: 2e-4,
    }[qtype]  # fmt: skip
    for offset in scale_offsets[qtype]:
        scales = rng.uniform(0.2, 1.0, size=len(data)).astype(np.float16) * np.float16(magnitude)
        data[:, offset : offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, -1)


def save_gguf(
    hf_dir: Path,
    path: Path,
    qtype: Q = Q.F32,
    random_quant: bool = False,
    stacked_experts: bool = True,
    seed: int = 0,
    metadata: dict | None = None,
    qtypes: dict[str, Q] | None = None,
) -> Path:
    """A llama-architecture GGUF file, as llama.cpp's converter writes one.

    `qtypes` gives some matrices their own type, by a part of their GGUF name ({"attn_v": Q6_K}),
    as llama.cpp's mixes (Q4_K_M) do.

    Matrices are stored as `qtype`: quantized from the HF weights with `gguf.quants` where it
    can (F16, BF16, Q8_0, Q4_0, Q4_1); with `random_quant` (needed for K-quants, which
    `gguf.quants` cannot quantize) they are random valid blocks instead, and the reference must
    be built from their dequantization (`dequantized_hf_state`). Norms stay F32.
    """
    cfg = json.loads((hf_dir / "config.json").read_text())
    rng = np.random.default_rng(seed)
    default_qtype = qtype
    arch = "qwen2" if cfg["model_type"] == "qwen2" else "llama"
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    if cfg.get("sliding_window"):
        w.add_sliding_window(cfg["sliding_window"])
    if "num_local_experts" in cfg:
        w.add_expert_count(cfg["num_local_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
    for key, value in (metadata or {}).items():  # a header that lies about its tensors, for the error tests
        kind = gguf.GGUFValueType.UINT64 if value >= 2**32 else gguf.GGUFValueType.UINT32
        w.kv_data[0][f"llama.{key}"] = gguf.GGUFValue(value, kind)
    tensors = {}
    for name, t in hf_tensors(hf_dir).items():
        if is_rope_projection(name) and arch == "llama":  # llama.cpp's converter; qwen2 keeps the halves
            heads = cfg["num_attention_heads"] if "q_proj" in name else cfg["num_key_value_heads"]
            t = halves_to_interleaved(t, heads)
        tensors[hf_to_gguf(name)] = t.float().numpy()
    if stacked_experts:
        tensors = _stack_gguf_experts(tensors)
    for name, array in tensors.items():
        qtype = next((t for part, t in (qtypes or {}).items() if part in name), default_qtype)
        if array.ndim == 1 or qtype == Q.F32:
            w.add_tensor(name, array)
        elif qtype == Q.F16:
            w.add_tensor(name, array.astype(np.float16))
        elif random_quant:
            rows = int(np.prod(array.shape[:-1]))
            blocks = random_blocks(qtype, rows, array.shape[-1], rng)
            w.add_tensor(name, blocks.reshape(*array.shape[:-1], -1), raw_dtype=qtype)
        else:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _stack_gguf_experts(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, parts = {}, {}
    for name, array in tensors.items():
        pieces = name.split(".")
        if len(pieces) == 5:  # blk.N.ffn_gate.E.weight
            blk, layer, kind, expert, _ = pieces
            parts.setdefault(f"{blk}.{layer}.{kind}_exps.weight", {})[int(expert)] = array
        else:
            out[name] = array
    for name, by_expert in parts.items():
        out[name] = np.stack([by_expert[e] for e in range(len(by_expert))])
    return out


def dequantized_hf_state(gguf_path: Path, hf_model_) -> dict[str, torch.Tensor]:
    """The HF model's state dict with every matrix replaced by gguf's own dequantization of the file.

    Used as the reference for quantized files: `gguf.quants.dequantize` is llama.cpp's block
    math, independent of autan's torch unpacking.
    """
    cfg = hf_model_.config
    reader = gguf.GGUFReader(gguf_path)
    per_expert: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        array = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensor = torch.from_numpy(array.copy())
        kind = t.name.split(".")[2] if t.name.startswith("blk.") else t.name
        if kind in ("attn_q", "attn_k") and t.name.endswith(".weight") and cfg.model_type != "qwen2":
            heads = cfg.num_attention_heads if kind == "attn_q" else cfg.num_key_value_heads
            tensor = interleaved_to_halves(tensor, heads)
        per_expert[t.name] = tensor
    return _to_hf_state(per_expert, hf_model_)


def _to_hf_state(gguf_tensors: dict[str, torch.Tensor], hf_model_) -> dict[str, torch.Tensor]:
    state = {}
    fused: dict[tuple[int, str], torch.Tensor] = {}
    for name, t in gguf_tensors.items():
        if name.endswith("_exps.weight"):
            layer = int(name.split(".")[1])
            fused[(layer, name.split(".")[2])] = t  # (E, rows, cols)
            continue
        state[gguf_to_hf(name).replace("block_sparse_moe.gate", "mlp.gate")] = t
    for (layer, kind), t in fused.items():
        prefix = f"model.layers.{layer}.mlp.experts"
        if kind == "ffn_down_exps":
            state[f"{prefix}.down_proj"] = t
    for layer in {k[0] for k in fused}:
        gate, up = fused[(layer, "ffn_gate_exps")], fused[(layer, "ffn_up_exps")]
        state[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = torch.cat([gate, up], dim=1)
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    expected = set(hf_model_.state_dict())
    assert set(state) == expected, sorted(set(state) ^ expected)
    return state


# Mistral 7B Instruct v0.1's chat template, as its GGUF conversions carry it.
MISTRAL_V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def save_gguf_sentencepiece(
    model_file: Path, path: Path, chat_template: str | None = None, add_bos: bool | None = None
) -> Path:
    """A GGUF carrying a SentencePiece tokenizer (`llama` kind), as llama.cpp's converter writes it
    (with `tokenizer.ggml.add_bos_token` where `add_bos` is not None).

    Tokens, scores and token types are read from the `.model` file with sentencepiece itself.
    The file holds no tensors: tokenizers are read from metadata alone.
    """
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def token_type(i: int) -> int:
        checks = [(sp.is_unknown, 2), (sp.is_control, 3), (sp.is_byte, 6), (sp.is_unused, 5)]
        return next((kind for check, kind in checks if check(i)), 1)

    n = sp.get_piece_size()
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([token_type(i) for i in range(n)])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if chat_template:
        w.add_chat_template(chat_template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_mistral_format(root: Path, arch: str, tokenizer_file: str, vocab_size: int) -> Path:
    """A tiny random Mistral or Mixtral in Mistral's own format, with one of mistral-common's tokenizers."""
    import shutil

    import mistral_common

    hf_dir = root / f"{arch}-hf"
    hf_model(arch, seed=3, vocab_size=vocab_size).save_pretrained(hf_dir)
    out = save_mistral(hf_dir, root / f"tiny-{arch}")
    name = "tekken.json" if tokenizer_file.startswith("tekken") else "tokenizer.model.v3"
    shutil.copy(Path(mistral_common.__file__).parent / "data" / tokenizer_file, out / name)
    return out


# a plain ChatML template (the default model's format, without its system-prompt default)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_with_template(root: Path, name: str, chat_template: str, arch: str = "llama", **overrides) -> Path:
    """A tiny random Llama (or another of `hf_model`'s architectures) in Hugging Face's format with
    the default model's tokenizer (byte-level BPE, 49152 tokens, ChatML control tokens) and the
    given chat template."""
    from autan import registry
    from autan.tokenizer import load_tokenizer

    source = load_tokenizer(registry.pull("smollm2", quiet=True))
    out = root / name
    hf_model(arch, seed=5, vocab_size=source.vocab_size, **overrides).save_pretrained(out)
    source.tokenizer.save(str(out / "tokenizer.json"))
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": chat_template}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def tiny_bert(directory: Path, seed: int = 7) -> Path:
    """A tiny random BERT (2 layers, 64 wide) with all-MiniLM-L6-v2's WordPiece tokenizer, in
    sentence-transformers' layout (mean pooling, then unit length)."""
    import shutil

    import transformers

    from autan.guard.encoder import pull

    source = pull()
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=128)  # fmt: skip
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
                 "1_Pooling/config.json"):  # fmt: skip
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, directory / name)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return directory


def save_gguf_bert(hf_dir: Path, path: Path) -> Path:
    """A BERT encoder as llama.cpp's converter writes it: gguf-py's tensor names, matrices in F16,
    a WordPiece vocabulary in "phantom space" form (word starts get U+2581, "##" is dropped)."""
    import transformers

    model = transformers.BertModel.from_pretrained(hf_dir, add_pooling_layer=False)
    config = model.config
    vocab = json.loads((hf_dir / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    phantom = [t if t.startswith("[") and t.endswith("]") else t[2:] if t.startswith("##") else "\u2581" + t
               for t in tokens]  # fmt: skip
    w = gguf.GGUFWriter(path, "bert")
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_head_count(config.num_attention_heads)
    w.add_layer_norm_eps(config.layer_norm_eps)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_tokenizer_model("bert")
    w.add_token_list(phantom)
    w.add_token_types([3 if t.startswith("[") and t.endswith("]") else 1 for t in tokens])
    w.add_bos_token_id(vocab["[CLS]"])  # llama.cpp names [CLS] the BOS
    w.add_sep_token_id(vocab["[SEP]"])
    w.add_pad_token_id(vocab["[PAD]"])
    w.add_unk_token_id(vocab["[UNK]"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name.endswith("position_ids"):
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        data = tensor.float().numpy()
        w.add_tensor(target, data.astype(np.float16) if data.ndim == 2 else data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
