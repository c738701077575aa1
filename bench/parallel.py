"""Tensor parallel on this machine's CPU: the default model's decode speed and each rank's memory
with 1, 2 and 4 ranks (gloo), the same greedy tokens from each. Run as `python bench/parallel.py`;
it starts itself under torchrun for each rank count."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
TOKENS = 64


def rank_job(out: str) -> None:
    """One rank (or the one process): load, answer (rank 0), and write the figures to `out`."""
    import torch
    import torch.distributed as dist

    from autan import registry
    from autan.engine.distributed import follow, join
    from autan.engine.engine import Engine
    from autan.engine.sampling import SamplingParams
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model

    ranks = join()
    rank = ranks[0] if ranks else 0
    path = registry.pull("smollm2", quiet=True)
    model = load_model(path, ranks=ranks)
    Path(f"{out}.rss{rank}").write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    reduce_ms = 0.0
    if ranks:  # what one all-reduce of a decode step's row costs here
        row = torch.zeros(1, model.config.dim)
        for _ in range(20):
            dist.all_reduce(row)
        start = time.perf_counter()
        for _ in range(200):
            dist.all_reduce(row)
        reduce_ms = (time.perf_counter() - start) / 200 * 1e3
    if rank != 0:
        follow(model)
    else:
        engine = Engine(model, load_tokenizer(path))
        messages = [{"role": "user", "content": PROMPT}]
        list(engine.add_request(messages, SamplingParams(temperature=0, max_tokens=1)))  # warm-up
        stream = engine.add_request(messages, SamplingParams(temperature=0, max_tokens=TOKENS, ignore_eos=True))
        list(stream)
        if engine.leader is not None:
            engine.leader.close()
        done = stream.completion
        figures = {"tokens": done.token_ids, "decode": done.tokens_per_second, "reduce_ms": reduce_ms}
        Path(out).write_text(json.dumps({**figures, "layers": model.config.n_layers}))
    if ranks:
        dist.destroy_process_group()


def main() -> None:
    from report import write_section

    rows, first = [], None
    for world in (1, 2, 4):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            if world == 1:
                command = [sys.executable, __file__, "--rank-job", f.name]
            else:
                command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world),
                           "--master-port", "29731", __file__, "--rank-job", f.name]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, os.cpu_count() // world))}
            subprocess.run(command, check=True, env=env, capture_output=True)
            found = json.loads(Path(f.name).read_text())
            sizes = [Path(f"{f.name}.rss{r}") for r in range(world)]
            found["rss"] = [int(p.read_text()) for p in sizes]
            for p in sizes:
                p.unlink()
        first = first or found["tokens"]
        same = "yes" if found["tokens"] == first else "no"
        rss = " / ".join(f"{r / 2**20:.0f}" for r in found["rss"])
        per_token = 1e3 / found["decode"]
        comms = found["reduce_ms"] * (2 * found["layers"] + 1)
        rows.append(f"| {world} | {found['decode']:.1f} | {per_token:.0f} | {comms:.0f} | {rss} | {same} |")
    body = f"""The default model (SmolLM2-135M-Instruct, Q4_1), {TOKENS} greedy tokens after a chat prompt,
on this machine's {os.cpu_count()} cores shared by the ranks (threads per rank: cores / ranks).
Each rank holds its part of the weights; a step costs two all-reduces a block and one for the
embedding (gloo, over loopback; timed alone on the ranks, one row each), and split over ranks
the layers run one by one rather than in the fused native step (in one process, on one thread,
that alone halves decode speed). Most of the memory is torch's own; the weights are 98 MB.

| ranks | decode tokens/s | ms a token | of which all-reduces, ms | peak memory per rank, MiB | same tokens as 1 rank |
|---|---|---|---|---|---|
{chr(10).join(rows)}

On one small host this only shows the cost: tensor parallelism is for a model that does not fit
one machine's memory (docs/scale-out.md), where each rank brings its own memory bandwidth."""
    write_section("Tensor parallel on CPU ranks", body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-job"]:
        rank_job(sys.argv[2])
    else:
        main()
