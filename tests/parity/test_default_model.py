"""The real default model, SmolLM2-135M-Instruct Q4_1, against transformers' own GGUF loading.

transformers dequantizes the whole file to fp32 with `gguf.quants`; autan keeps the blocks
packed and unpacks them per use. Both must compute the same logits and the same greedy text.
"""

import pytest
import torch

import autan
from autan import registry

pytestmark = pytest.mark.default_model

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's
# vocabulary, written out so this test needs no tokenizer.
PROMPT = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]


@pytest.fixture(scope="module")
def gguf_path():
    return registry.pull("smollm2", quiet=True)


@pytest.fixture(scope="module")
def reference(gguf_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def model(gguf_path):
    return autan.load_model(gguf_path, kernels="exact")  # the reference path; packed kernels: tests/model


def test_config_read_from_metadata(model):
    c = model.config
    assert (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim) == (576, 30, 9, 3, 64)
    assert (c.hidden_dim, c.vocab_size, c.rope_theta, c.tie_embeddings) == (1536, 49152, 100000.0, True)


def test_logits_match_transformers(model, reference):
    with torch.no_grad():
        expected = reference(torch.tensor([PROMPT])).logits[0]
    logits = model.logits(PROMPT)
    torch.testing.assert_close(logits, expected, atol=2e-4, rtol=1e-4)


def test_greedy_32_tokens_match_transformers(model, reference):
    with torch.no_grad():
        out = reference.generate(torch.tensor([PROMPT]), max_new_tokens=32, do_sample=False, eos_token_id=None)
    expected = out[0, len(PROMPT) :].tolist()

    cache = model.new_cache()
    ids = []
    with torch.inference_mode():
        logits = model(torch.tensor(PROMPT), cache, last_only=True)
        for _ in range(32):
            ids.append(int(logits[-1].argmax()))
            logits = model(torch.tensor(ids[-1:]), cache, last_only=True)
    assert ids == expected
