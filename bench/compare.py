"""The same speed measurements in two checkouts of autan, taking turns: did a change move them?

For a restructuring that must leave the figures alone, run bench/speed.py's and bench/dense7b.py's
own autan measurements (`--engine autan`: the default model's decode and 512-token prefill; the
Mistral-7B-shaped Q4_0 file's decode, 128-token prefill and load) in this checkout and in another
one (a `git worktree` of the commit before, with its native kernels built in place:
`python setup.py build_ext --inplace`), alternately, each run in its own process, and report
the medians side by side. The 7B file is written first if missing (bench/dense7b.py's).

    git worktree add ../before COMMIT && (cd ../before && python setup.py build_ext --inplace)
    python bench/compare.py ../before [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from report import write_section

HERE = Path(__file__).resolve().parent.parent
MEASURES = {
    "default model": (["bench/speed.py", "--engine", "autan", "--repeat", "1"],
                      {"decode_tps": "decode, tokens/s", "prefill_tps": "prefill (512), tokens/s"}),
    "Mistral-7B-shaped Q4_0": (["bench/dense7b.py", "--engine", "autan"],
                               {"decode_tps": "decode (tg32), tokens/s", "prefill_tps": "prefill (pp128), tokens/s",
                                "load_s": "load, s"}),
}  # fmt: skip


def measure(tree: Path, script: list[str]) -> dict:
    """One run of `script` (a bench script's autan-only mode) on `tree`'s code, in its own process."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    run = subprocess.run([sys.executable, str(HERE / script[0]), *script[1:]], capture_output=True, text=True,
                         env=env, cwd=tree)  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(script)} failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the other checkout (its native kernels built in place)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    before = args.before.resolve()
    commits = {}
    for name, tree in (("before", before), ("after", HERE)):
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        commits[name] = head.stdout.strip()
    subprocess.run([sys.executable, str(HERE / "bench" / "dense7b.py"), "--engine", "make"], check=True, cwd=HERE)
    rows = ["| model | figure | before | after | after / before |", "|---|---|---|---|---|"]
    for model, (script, figures) in MEASURES.items():
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for round_ in range(args.repeat):
            order = [("before", before), ("after", HERE)]
            for name, tree in order if round_ % 2 == 0 else order[::-1]:  # who goes first changes each round
                runs[name].append(measure(tree, script))
                print(model, name, runs[name][-1], flush=True)
        for key, label in figures.items():
            b, a = (statistics.median(r[key] for r in runs[name]) for name in ("before", "after"))
            spread = {n: (min(r[key] for r in runs[n]), max(r[key] for r in runs[n])) for n in runs}
            cells = [f"{b:.2f} ({spread['before'][0]:.2f}-{spread['before'][1]:.2f})",
                     f"{a:.2f} ({spread['after'][0]:.2f}-{spread['after'][1]:.2f})", f"{a / b:.3f}"]  # fmt: skip
            rows.append(f"| {model} | {label} | {' | '.join(cells)} |")
    body = (
        f"Before: {commits['before']}; after: {commits['after']}. Median (and range) of {args.repeat} runs of each "
        "script's autan-only mode, the checkouts taking turns (the first to run alternating), each run in its own "
        "process.\n\n" + "\n".join(rows)
    )
    write_section("Before and after a change", body)


if __name__ == "__main__":
    main()
