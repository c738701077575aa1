"""One model served over the ranks of a torch.distributed group (`autan.model.parallel` splits it).

Rank 0 runs the engine: the scheduler, sampling, and the HTTP server above it. Before each step it
tells the other ranks what the step is (the tokens, positions and block tables of its chunks, and
the rows whose logits it needs); every rank then runs that step on its shard, with a KV cache of
its own heads laid out by the same block tables, and the ranks meet in the step's collectives.
The messages are JSON, broadcast as bytes: no pickle crosses between processes.

torchrun starts the ranks and sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (`--nnodes` and
a rendezvous endpoint for several hosts): `torchrun --nproc-per-node 2 -m autan serve MODEL`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from autan.engine.paged import Chunk, KVPool, PagedStep
from autan.model.transformer import Transformer

# How long a rank waits in a collective: the others may be busy loading a model or idle between
# requests; a rank that is gone ends the group (torchrun stops the rest).
TIMEOUT = timedelta(days=7)


def join(device: str = "cpu") -> tuple[int, int] | None:
    """(rank, world size) after joining the group torchrun describes in the environment (gloo on
    CPUs, NCCL on GPUs); None for a process started alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def _device() -> torch.device:
    """Where the messages travel: NCCL moves only GPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _broadcast(message: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's `message`, on every rank."""
    device = _device()
    data = json.dumps(message).encode() if message is not None else b""
    length = torch.tensor([len(data)], dtype=torch.long, device=device)
    dist.broadcast(length, 0)
    payload = torch.empty(int(length), dtype=torch.uint8, device=device)
    if message is not None:
        payload.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(payload, 0)
    return message if message is not None else json.loads(payload.cpu().numpy().tobytes())


class Leader:
    """Rank 0's side: it sends each step to the other ranks before running it itself."""

    def __init__(self, kv: KVPool, n_blocks: int):
        _broadcast({"n_blocks": n_blocks, "block_size": kv.block_size})

    def step(self, chunks: Sequence[Chunk], rows: Tensor) -> None:
        message = {"chunks": [[list(c.tokens), c.start, list(c.table)] for c in chunks], "rows": rows.tolist()}
        _broadcast(message)

    def close(self) -> None:
        """The other ranks stop (their `follow` returns)."""
        _broadcast({"stop": True})


def follow(model: Transformer) -> None:
    """A rank other than 0: run every step rank 0 sends on this rank's shard, until it says stop."""
    layout = _broadcast(None)
    kv = KVPool(model.cache_config, layout["n_blocks"], layout["block_size"], model.device, model.dtype)
    window = model.config.sliding_window
    while True:
        message = _broadcast(None)
        if message.get("stop"):
            return
        chunks = [Chunk(tokens, start, table) for tokens, start, table in message["chunks"]]
        step = PagedStep(kv, chunks, window, model.device)
        with torch.inference_mode():
            model.run(step.tokens, step, torch.tensor(message["rows"], dtype=torch.long))
