"""Tensor parallel on CPU ranks (gloo), as a user launches it with torchrun: 2 and 4 ranks give
the logits of the same model in one process to float tolerance, and the same greedy tokens, on
a random Mistral (sliding window, chunked prefill over small KV blocks), a random Mixtral (its
experts split over the ranks; as safetensors and as GGUF) and the default model; `torchrun ...
-m autan serve` answers the `mistralai` SDK with the tokens one process gives. How a model
splits is checked over many shapes without processes."""

import functools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType as Q
from mistralai.client import Mistral

from autan import registry
from autan.config import ModelConfig, MoeConfig
from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from autan.model.parallel import Shard, bounds
from autan.tokenizer import load_tokenizer
from autan.weights import load_model
from checkpoints import CHATML, save_gguf, tiny_with_template
from processes import free_port, wait_healthy

RANKS = Path(__file__).parent / "ranks.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
LOOPBACK = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # the ranks meet on 127.0.0.1, whatever the host's name
PROMPT = [random.Random(7).randrange(49152) for _ in range(21)]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp")
    mistral = tiny_with_template(root, "mistral", CHATML, arch="mistral")  # sliding window 8
    mixtral = tiny_with_template(root, "mixtral", CHATML, arch="mixtral")  # 4 experts, 2 a token
    gguf = save_gguf(mixtral, root / "mixtral-q8_0.gguf", Q.Q8_0)  # stacked experts, quantized
    return {"mistral": mistral, "mixtral": mixtral, "mixtral-gguf": gguf, "smollm2": registry.pull("smollm2")}


@functools.cache
def one_process(path):
    """The reference: the exact kernels' logits of PROMPT and the engine's greedy tokens."""
    with torch.inference_mode():
        logits = load_model(path, kernels="exact")(torch.tensor(PROMPT))
    tokenizer = load_tokenizer(registry.pull("smollm2", quiet=True))  # every model's vocabulary
    engine = Engine(load_model(path), tokenizer, EngineConfig(block_size=4, max_batched_tokens=8))
    stream = engine.add_request(PROMPT, SamplingParams(temperature=0, max_tokens=MAX_TOKENS))
    list(stream)
    return logits, stream.completion.token_ids


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_give_the_logits_and_tokens_of_one_process(models, world, tmp_path):
    out = tmp_path / "ranks.pt"
    launch = [*TORCHRUN, "--nproc-per-node", str(world), "--master-port", str(free_port()), str(RANKS), str(out),
              ",".join(map(str, PROMPT)), str(MAX_TOKENS), *map(str, models.values())]  # fmt: skip
    ran = subprocess.run(launch, capture_output=True, text=True, timeout=900, env=LOOPBACK)
    assert ran.returncode == 0, ran.stderr[-4000:]
    found = torch.load(out, weights_only=True)
    assert found["world"] == world
    for name, path in models.items():
        logits, tokens = one_process(path)
        split = found["results"][str(path)]
        gap = (split["logits"] - logits).abs().max().item()
        assert gap <= (2e-3 if name == "smollm2" else 1e-4), (name, gap)  # 30 layers of float32 sums in another order
        assert split["tokens"] == tokens, name


def served(spec, world, root, device_args=()):
    port = free_port()
    log = root / f"serve-{world}.log"
    process = subprocess.Popen(
        [*TORCHRUN, "--nproc-per-node", str(world), "--master-port", str(free_port()), "-m", "autan", "serve", spec,
         "--port", str(port), "--db", f"sqlite:///{root / 'store.db'}", *device_args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=LOOPBACK,
    )  # fmt: skip
    wait_healthy(f"http://127.0.0.1:{port}", process, log)
    return process, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("name", "world"), [("smollm2", 2), ("mistral", 2), ("mixtral", 4)])
def test_torchrun_serves_the_mistralai_sdk(models, name, world, tmp_path):
    path = models[name]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    tokenizer = load_tokenizer(path)
    engine = Engine(load_model(path), tokenizer)
    stream = engine.add_request(messages, SamplingParams(temperature=0, max_tokens=24))
    want = "".join(d.text for d in stream)
    process, url = served(f"{name}={path}", world, tmp_path)
    try:
        client = Mistral(api_key="none", server_url=url)
        reply = client.chat.complete(model=name, messages=messages, temperature=0, max_tokens=24)
        assert reply.choices[0].message.content == want
        chunks = client.chat.stream(model=name, messages=messages, temperature=0, max_tokens=24)
        assert "".join(c.data.choices[0].delta.content or "" for c in chunks) == want
    finally:
        process.terminate()
        process.wait(timeout=60)
    log = (tmp_path / f"serve-{world}.log").read_text()
    assert f"rank 0 of {world}" in log


def config(heads, kv, hidden, vocab, experts=None):
    moe = MoeConfig(experts, 2) if experts else None
    return ModelConfig(dim=64, n_layers=2, n_heads=heads, n_kv_heads=kv, head_dim=16, hidden_dim=hidden,
                       vocab_size=vocab, norm_eps=1e-5, rope_theta=1e4, max_seq_len=64, moe=moe)  # fmt: skip


def test_every_head_column_expert_and_word_is_held_once():
    """Over many shapes: the ranks' query heads, feed-forward columns, experts and vocabulary rows
    cover the model once each; each rank holds the KV head each of its query heads reads; columns
    split on block boundaries where there are enough blocks."""
    rng = random.Random(0)
    for _ in range(400):
        kv = rng.choice([1, 2, 3, 4, 8])
        heads = kv * rng.choice([1, 2, 3, 4])
        hidden = rng.choice([96, 256, 1536, 14336, 1000])
        experts = rng.choice([None, 4, 8])
        c = config(heads, kv, hidden, rng.randrange(100, 50000), experts)
        for world in range(1, min(heads, experts or heads) + 1):
            shards = [Shard.plan(c, r, world) for r in range(world)]
            q = [h for s in shards for h in range(*s.q_heads)]
            assert q == list(range(heads))
            for s in shards:
                local = s.local_config(c)  # a valid config: the query heads group evenly over the KV heads
                ratio = local.n_heads // local.n_kv_heads
                reads = [s.kv_heads[i // ratio] for i in range(local.n_heads)]
                assert reads == [h // (heads // kv) for h in range(*s.q_heads)]
            assert [w for s in shards for w in range(*s.vocab)] == list(range(c.vocab_size))
            if experts:
                assert [e for s in shards for e in range(*s.experts)] == list(range(experts))
                assert all(s.hidden == (0, hidden) for s in shards)
            else:
                assert [x for s in shards for x in range(*s.hidden)] == list(range(hidden))
                unit = 256 if hidden % 256 == 0 and hidden // 256 >= world else None
                assert unit is None or all(a % unit == 0 for s in shards for a in s.hidden)


def test_a_split_the_model_cannot_take_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="this model has 4 attention heads, so at most 4 ranks"):
        Shard.plan(config(4, 2, 96, 100), 0, 8)
    with pytest.raises(ValueError, match="this model has 4 experts, so at most 4 ranks"):
        Shard.plan(config(8, 8, 96, 100, experts=4), 0, 8)
    assert bounds(10, 3) == [0, 3, 6, 10] and bounds(1536, 4, 256) == [0, 256, 768, 1024, 1536]
