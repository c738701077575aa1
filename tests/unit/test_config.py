"""ModelConfig from params.json, HF config.json and GGUF metadata."""

import json

import pytest

from autan import CheckpointError, ModelConfig, MoeConfig, UnsupportedModelError

MISTRAL_7B = {
    "dim": 4096,
    "n_layers": 32,
    "head_dim": 128,
    "hidden_dim": 14336,
    "n_heads": 32,
    "n_kv_heads": 8,
    "norm_eps": 1e-05,
    "vocab_size": 32000,
}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_params_json_mistral_7b_v01_defaults_theta_by_window(tmp_path):
    windowed = ModelConfig.from_params_json(write(tmp_path, "a.json", MISTRAL_7B | {"sliding_window": 4096}))
    assert windowed.rope_theta == 1e4 and windowed.sliding_window == 4096 and windowed.moe is None
    full = ModelConfig.from_params_json(write(tmp_path, "b.json", MISTRAL_7B))
    assert full.rope_theta == 1e6 and full.sliding_window is None


def test_params_json_mixtral_nemo_and_list_windows(tmp_path):
    mixtral = ModelConfig.from_params_json(
        write(
            tmp_path,
            "m.json",
            MISTRAL_7B | {"rope_theta": 1e6, "moe": {"num_experts": 8, "num_experts_per_tok": 2}},
        )
    )
    assert mixtral.moe == MoeConfig(8, 2)
    nemo = ModelConfig.from_params_json(write(tmp_path, "n.json", MISTRAL_7B | {"dim": 5120, "n_heads": 32}))
    assert nemo.head_dim == 128  # read, not dim // n_heads = 160
    same = ModelConfig.from_params_json(write(tmp_path, "l.json", MISTRAL_7B | {"sliding_window": [512, 512]}))
    assert same.sliding_window == 512
    with pytest.raises(UnsupportedModelError, match=r"per-layer sliding windows \[512, 4096\]"):
        ModelConfig.from_params_json(write(tmp_path, "x.json", MISTRAL_7B | {"sliding_window": [512, 4096]}))


def test_params_json_errors_name_file_and_field(tmp_path):
    with pytest.raises(CheckpointError, match=r"p\.json: required field 'hidden_dim' is missing"):
        ModelConfig.from_params_json(
            write(tmp_path, "p.json", {k: v for k, v in MISTRAL_7B.items() if k != "hidden_dim"})
        )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError, match="bad.json: not valid JSON"):
        ModelConfig.from_params_json(bad)
    with pytest.raises(CheckpointError, match="nope.json: file not found"):
        ModelConfig.from_params_json(tmp_path / "nope.json")


HF_MISTRAL = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 32000,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "max_position_embeddings": 32768,
}


def test_hf_configs_of_the_three_families(tmp_path):
    mistral = ModelConfig.from_hf_config(write(tmp_path, "a.json", HF_MISTRAL))
    assert (mistral.head_dim, mistral.sliding_window, mistral.rope_theta) == (128, 4096, 1e4)
    llama = ModelConfig.from_hf_config(
        write(
            tmp_path,
            "b.json",
            HF_MISTRAL | {"architectures": ["LlamaForCausalLM"], "tie_word_embeddings": True},
        )
    )
    assert llama.sliding_window is None and llama.tie_embeddings  # Llama has no window
    mixtral = ModelConfig.from_hf_config(
        write(
            tmp_path,
            "c.json",
            HF_MISTRAL
            | {
                "architectures": ["MixtralForCausalLM"],
                "num_local_experts": 8,
                "num_experts_per_tok": 2,
                "sliding_window": None,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
            },
        )
    )
    assert mixtral.moe == MoeConfig(8, 2) and mixtral.rope_theta == 1e6 and mixtral.sliding_window is None


def test_hf_unknown_architecture_and_rope_scaling(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"architectures \['GPT2LMHeadModel'\] is not one of"):
        ModelConfig.from_hf_config(write(tmp_path, "g.json", HF_MISTRAL | {"architectures": ["GPT2LMHeadModel"]}))
    scaled = HF_MISTRAL | {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    with pytest.raises(UnsupportedModelError, match="rope_type 'llama3' is not supported"):
        ModelConfig.from_hf_config(write(tmp_path, "s.json", scaled))


def gguf_meta(**extra):
    meta = {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.context_length": 32768,
        "llama.embedding_length": 4096,
        "llama.feed_forward_length": 14336,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.rope.freq_base": 1e6,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.tokens": ["x"] * 32000,
    }
    return meta | extra


def test_gguf_metadata_mixtral_converted_by_llama_cpp():
    config = ModelConfig.from_gguf_metadata(
        "m.gguf", gguf_meta(**{"llama.expert_count": 8, "llama.expert_used_count": 2}), {"output.weight"}
    )
    assert config.moe == MoeConfig(8, 2)
    assert config.vocab_size == 32000  # from the token list when llama.vocab_size is absent
    assert config.head_dim == 128 and not config.tie_embeddings


def test_gguf_metadata_window_tied_and_errors():
    config = ModelConfig.from_gguf_metadata("w.gguf", gguf_meta(**{"llama.attention.sliding_window": 4096}), set())
    assert config.sliding_window == 4096 and config.tie_embeddings
    with pytest.raises(
        UnsupportedModelError, match=r"x.gguf: general.architecture 'gpt2' is not one of \['llama', 'qwen2'\]"
    ):
        ModelConfig.from_gguf_metadata("x.gguf", gguf_meta(**{"general.architecture": "gpt2"}), set())
    meta = gguf_meta()
    del meta["llama.block_count"]
    with pytest.raises(CheckpointError, match="metadata key 'llama.block_count' is missing"):
        ModelConfig.from_gguf_metadata("y.gguf", meta, set())


def test_inconsistent_shapes_are_refused():
    base = dict(
        dim=64,
        n_layers=1,
        n_heads=4,
        n_kv_heads=3,
        head_dim=16,
        hidden_dim=96,
        vocab_size=10,
        norm_eps=1e-5,
        rope_theta=1e4,
        max_seq_len=64,
    )
    with pytest.raises(ValueError, match="n_heads=4 is not a multiple of n_kv_heads=3"):
        ModelConfig(**base)
    with pytest.raises(ValueError, match=r"num_experts_per_tok=3 must be in 1\.\.2"):
        ModelConfig(**(base | {"n_kv_heads": 2, "moe": MoeConfig(2, 3)}))


def test_gguf_rope_scaling_is_refused_and_hf_family_defaults_follow_transformers(tmp_path):
    with pytest.raises(UnsupportedModelError, match="rope scaling 'linear' is not supported"):
        ModelConfig.from_gguf_metadata("s.gguf", gguf_meta(**{"llama.rope.scaling.type": "linear"}), set())
    bare = {k: v for k, v in HF_MISTRAL.items() if k not in ("rope_theta", "rms_norm_eps", "sliding_window")}
    mixtral = ModelConfig.from_hf_config(
        write(
            tmp_path,
            "m.json",
            bare | {"architectures": ["MixtralForCausalLM"], "num_local_experts": 8, "num_experts_per_tok": 2},
        )
    )
    assert (mixtral.rope_theta, mixtral.norm_eps, mixtral.sliding_window) == (1e6, 1e-5, None)
    mistral = ModelConfig.from_hf_config(write(tmp_path, "s.json", bare))
    assert (mistral.rope_theta, mistral.norm_eps, mistral.sliding_window) == (1e4, 1e-6, 4096)
