"""Run by torchrun in the tensor-parallel tests: each rank loads its part of every model named on
the command line; together they compute the logits of a prompt (one pass, no cache, on the
exact kernels) and a greedy answer through the engine (on the packed kernels, as served: rank 0
schedules, the others follow). Every model has the default model's vocabulary, and its tokenizer.
Rank 0 writes both to OUT.

    torchrun --nproc-per-node N tests/parallel/ranks.py OUT PROMPT_IDS MAX_TOKENS MODEL...
"""

import sys

import torch
import torch.distributed as dist

from autan import registry
from autan.engine.distributed import follow, join
from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from autan.tokenizer import load_tokenizer
from autan.weights import load_model


def main(out: str, prompt: str, max_tokens: str, *paths: str) -> None:
    rank, world = join()
    ids = [int(t) for t in prompt.split(",")]
    tokenizer = load_tokenizer(registry.pull("smollm2", quiet=True))
    results = {}
    for path in paths:
        with torch.inference_mode():
            logits = load_model(path, kernels="exact", ranks=(rank, world))(torch.tensor(ids))
        model = load_model(path, ranks=(rank, world))
        if rank != 0:
            follow(model)
            continue
        engine = Engine(model, tokenizer, EngineConfig(block_size=4, max_batched_tokens=8))
        stream = engine.add_request(ids, SamplingParams(temperature=0, max_tokens=int(max_tokens)))
        list(stream)
        engine.leader.close()
        results[path] = {"logits": logits, "tokens": stream.completion.token_ids}
    if rank == 0:
        torch.save({"world": world, "results": results}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
