"""`autan serve`: take the port first, then load the models, then serve until told to stop.

The listening socket is bound before anything slow happens, so a port already in use is an
error at once, before a model loads or a banner claims a server that will not be there.

Started by torchrun (`torchrun --nproc-per-node N -m autan serve MODEL`), the model is split over
the N ranks (`autan.engine.distributed`): rank 0 serves HTTP and schedules, the others run the
same steps on their parts.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autan import registry
from autan.errors import AutanError

if TYPE_CHECKING:
    from autan.server.served import ServedModel

GRACEFUL_SECONDS = 10  # on SIGTERM, how long open streams may run on before they are cut


@dataclass(frozen=True)
class Settings:
    models: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: Sequence[str] = ()
    multi_user: bool = False
    allow_signup: bool = False
    public_metrics: bool = False
    allowed_hosts: Sequence[str] = ()
    trusted_proxies: Sequence[str] = ()  # addresses whose X-Forwarded-For is believed
    max_waiting: int = 256
    max_body_bytes: int = 8 * 2**20
    log_prompts: bool = False
    db: str | None = None
    engine: dict = field(default_factory=dict)  # EngineConfig fields
    quantize: str | None = None
    kernels: str = "packed"  # what a GGUF file's blocks become (`autan.load_model`)
    mmap: bool = True
    guard: str | None = None  # a guard policy's TOML file
    adapters: Sequence[str] = ()  # LoRA adapters: "NAME=PATH" (on the one model) or "MODEL:NAME=PATH"
    device: str = "cpu"  # "cuda": each rank of a split model on its own GPU (LOCAL_RANK), one process on cuda:0
    embedding_models: Sequence[str] = ()  # encoders for /v1/embeddings besides the packaged one
    finetune_memory: int | None = None  # bytes one fine-tuning job may hold (None: 40% of the machine's)

    @classmethod
    def from_args(cls, args: argparse.Namespace, api_keys: Sequence[str]) -> Settings:
        return cls(
            models=args.models,
            host=args.host,
            port=args.port,
            api_keys=api_keys,
            multi_user=args.multi_user,
            allow_signup=args.allow_signup,
            public_metrics=args.public_metrics,
            allowed_hosts=args.allowed_host,
            trusted_proxies=args.trusted_proxy,
            max_waiting=args.max_waiting,
            max_body_bytes=args.max_body_size,
            log_prompts=args.log_prompts,
            db=args.db,
            engine={
                "max_running": args.max_running,
                "max_batched_tokens": args.max_batched_tokens,
                "kv_cache_bytes": args.kv_cache_memory,
            },
            quantize=args.quantize,
            kernels=args.kernels,
            mmap=args.mmap,
            guard=args.guard,
            adapters=args.adapter,
            device=args.device,
            embedding_models=args.embedding_model,
            finetune_memory=args.finetune_memory,
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = " (another server is using it: stop it, or choose another with --port)" if port else ""
        raise AutanError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    return sock


def with_adapter(served: Sequence[ServedModel], spec: str) -> ServedModel:
    """The model an `--adapter` names ("NAME=PATH" on the only model, "MODEL:NAME=PATH"), through it."""
    from pathlib import Path

    name, _, path = spec.partition("=")
    base_id, _, name = name.rpartition(":")
    if not name or not path:
        raise AutanError(f"--adapter {spec!r} must be NAME=PATH, or MODEL:NAME=PATH with several models")
    bases = {m.id: m for m in served if m.adapter is None}
    if not base_id and len(bases) > 1:
        raise AutanError(f"--adapter {spec!r}: say which model it adapts, as MODEL:NAME=PATH ({', '.join(bases)})")
    base = bases.get(base_id) if base_id else next(iter(bases.values()))
    if base is None:
        raise AutanError(f"--adapter {spec!r}: no model '{base_id}' is served (served: {', '.join(bases)})")
    return base.with_adapter(name, Path(path).expanduser())


def serve(settings: Settings) -> None:
    import uvicorn

    from autan import native
    from autan.embeddings import load_embedder
    from autan.engine.engine import EngineConfig
    from autan.guard.policy import GuardPolicy
    from autan.http.auth import Policy
    from autan.server.app import Limits, create_app
    from autan.server.embeddings import Embedders
    from autan.server.protocol import Protocol
    from autan.server.served import load_served
    from autan.store.db import Store

    if settings.allow_signup and not settings.multi_user:
        raise AutanError("--allow-signup opens accounts, which need --multi-user")
    guard = GuardPolicy.load(settings.guard) if settings.guard else None  # a bad policy fails before the load
    device = _device(settings.device)
    ranks = _ranks(settings, device)
    if ranks is not None and ranks[0] != 0:
        return _follow(settings, device, ranks)  # the HTTP server, and everything above the model, is rank 0's
    sock = bind(settings.host, settings.port)
    config = EngineConfig(**settings.engine)
    served = [load_served(spec, config, settings.quantize, settings.mmap, device, ranks, settings.kernels)
              for spec in settings.models]  # fmt: skip
    if ranks is not None:
        print(f"rank 0 of {ranks[1]}: the model is split over {ranks[1]} ranks", file=sys.stderr)
    served += [with_adapter(served, spec) for spec in settings.adapters]
    for m in served:
        print(f"serving {m.id} ({m.path}), context {m.context} tokens", file=sys.stderr)
    print(f"kernels: {native.describe()}", file=sys.stderr)
    store = Store(settings.db)
    policy = Policy(settings.api_keys, settings.multi_user, settings.allow_signup, settings.public_metrics)
    limits = Limits(settings.max_waiting, settings.max_body_bytes, settings.allowed_hosts)
    embedders = Embedders([load_embedder(spec) for spec in settings.embedding_models])
    for e in embedders.loaded.values():
        print(f"embeddings: {e.id} ({e.path}), {e.dimensions} dimensions, {e.pooling} pooling", file=sys.stderr)
    app = create_app(served, policy=policy, limits=limits, log_prompts=settings.log_prompts, store=store, guard=guard,
                     embedders=embedders, finetune_memory=settings.finetune_memory)  # fmt: skip
    if guard is not None:
        print(f"guard: {guard.moderator}, input rail {guard.input}, output rail {guard.output}", file=sys.stderr)
    port = sock.getsockname()[1]
    print(f"chat app on http://{settings.host}:{port}/ (conversations in {store.engine.url})", file=sys.stderr)
    if settings.multi_user and not store.accounts.has_users():
        first = "the first account made in the app" if app.state.access.signup_open else "`autan user add NAME --admin`"
        print(f"no accounts yet: {first} becomes the admin", file=sys.stderr)
    # X-Forwarded-For only from proxies the operator names: believed from anyone, it would let a
    # client pick the address that sign-in throttling counts against
    proxies = {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=Protocol,  # headers within a time limit, bodies too (autan.http.gate)
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            **(proxies if settings.trusted_proxies else {"proxy_headers": False}),
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        for m in served:
            m.engine.close()
        if ranks is not None:
            served[0].engine.engine.leader.close()  # the other ranks stop


def _device(name: str) -> str:
    """The device this process runs on: with several ranks on a host, each on its own GPU."""
    import torch

    if name == "cuda":
        if not torch.cuda.is_available():
            raise AutanError("--device cuda: this torch build sees no CUDA GPU")
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return name


def _ranks(settings: Settings, device: str) -> tuple[int, int] | None:
    """This process's place among the ranks torchrun started, if it did; a split model serves alone."""
    from autan.engine.distributed import join

    ranks = join(device)
    if ranks is not None and (len(settings.models) != 1 or settings.adapters):
        raise AutanError(f"a model split over {ranks[1]} ranks is served alone: name one model, and no --adapter")
    return ranks


def _follow(settings: Settings, device: str, ranks: tuple[int, int]) -> None:
    """A rank other than 0: load this rank's part of the model and run the steps rank 0 sends."""
    from autan.engine.distributed import follow
    from autan.server.served import spec_target
    from autan.weights import load_model

    path = registry.resolve(spec_target(settings.models[0])[1])
    follow(load_model(path, device, quantize=settings.quantize, mmap=settings.mmap, ranks=ranks,
                      kernels=settings.kernels))  # fmt: skip
