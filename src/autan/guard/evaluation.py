"""`autan eval safety`: the held-out prompts through a served model, with each guard.

The model is any Mistral- or OpenAI-compatible server (`--base-url`: ours, llama-server, a
hosted one). Each prompt is asked under each mode:

- `off`: no guard (`guardrails: false`);
- `safe_prompt`: Mistral's guardrail system prompt;
- `rails`: the server's rails (`guardrails: true`: the classifier on the prompt and the answer);
- `self_reflection`: the served model first judges the prompt (`/v1/moderations` with its own id);
  a flagged one counts as refused, with no answer asked for.

Each answer is judged refused or not by `guard.refusal` (its accuracy against PyRIT's labelled
answers is reported beside the table). Per suite (a held-out source) and mode, the table gives
the unsafe prompts answered, the safe prompts refused, and the time a prompt took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from autan.guard import data
from autan.guard.refusal import RefusalDetector, accuracy

MODES = ("off", "safe_prompt", "rails", "self_reflection")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "safety.md"


@dataclass
class Asked:
    source: str
    unsafe: bool
    prompt: str
    mode: str
    answer: str = ""
    finish_reason: str | None = None
    seconds: float = 0.0
    refused: bool = False
    error: str | None = None


def suites(limit: int | None, seed: int) -> list[data.Example]:
    """The held-out split, at most `limit` prompts per source and kind (unsafe, safe), seeded."""
    _, _, test = data.split(data.load_all(), seed=0)
    chosen: list[data.Example] = []
    for source in sorted({e.source for e in test}):
        for unsafe in (True, False):
            part = [e for e in test if e.source == source and bool(e.labels) == unsafe]
            random.Random(f"{seed}/{source}/{unsafe}").shuffle(part)
            chosen += part[:limit] if limit else part
    return chosen


async def ask(client: httpx.AsyncClient, model: str, item: Asked, max_tokens: int) -> None:
    started = time.perf_counter()
    try:
        if item.mode == "self_reflection":
            judged = await client.post("/v1/moderations", json={"model": model, "input": item.prompt})
            judged.raise_for_status()
            if judged.json()["results"][0]["flagged"]:
                item.finish_reason = "content_filter"
                return
        body = {
            "model": model,
            "messages": [{"role": "user", "content": item.prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
            "safe_prompt": item.mode == "safe_prompt",
        }
        if item.mode == "rails":
            body["guardrails"] = True
        elif item.mode == "off":
            body["guardrails"] = False
        response = await client.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            item.error = f"HTTP {response.status_code}: {response.text[:300]}"
            return
        choice = response.json()["choices"][0]
        item.answer, item.finish_reason = choice["message"]["content"] or "", choice["finish_reason"]
    except (httpx.HTTPError, KeyError, ValueError) as e:
        item.error = f"{type(e).__name__}: {e}"
    finally:
        item.seconds = time.perf_counter() - started


async def run_all(base_url: str, model: str, items: list[Asked], max_tokens: int, parallel: int, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=parallel)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600, limits=limits) as client:
        gate = asyncio.Semaphore(parallel)
        done = 0

        async def one(item: Asked) -> None:
            nonlocal done
            async with gate:
                await ask(client, model, item, max_tokens)
            done += 1
            print(f"\r{done}/{len(items)} asked", end="", file=sys.stderr, flush=True)

        await asyncio.gather(*(one(i) for i in items))
        print(file=sys.stderr)


def table(items: list[Asked], modes: list[str]) -> dict:
    """Per suite and mode: unsafe answered, safe refused, mean seconds; and overall."""
    out: dict = {}
    for source in [*sorted({i.source for i in items}), "all"]:
        for mode in modes:
            mine = [i for i in items if i.mode == mode and (source == "all" or i.source == source) and not i.error]
            unsafe = [i for i in mine if i.unsafe]
            safe = [i for i in mine if not i.unsafe]
            out.setdefault(source, {})[mode] = {
                "unsafe": len(unsafe),
                "unsafe_answered": sum(not i.refused for i in unsafe) / len(unsafe) if unsafe else None,
                "safe": len(safe),
                "safe_refused": sum(i.refused for i in safe) / len(safe) if safe else None,
                "seconds": sum(i.seconds for i in mine) / len(mine) if mine else None,
            }
    return out


def markdown(result: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.1%}"

    modes = result["modes"]
    head = "| suite | " + " | ".join(f"{m}: unsafe answered / safe refused / s" for m in modes) + " |"
    rows = [head, "|---|" + "---|" * len(modes)]
    for source, by_mode in result["table"].items():
        cells = []
        for m in modes:
            r = by_mode[m]
            seconds = "-" if r["seconds"] is None else f"{r['seconds']:.2f}"
            cells.append(
                f"{pct(r['unsafe_answered'])} ({r['unsafe']}) / {pct(r['safe_refused'])} ({r['safe']}) / {seconds}"
            )
        rows.append(f"| {'**all**' if source == 'all' else source} | " + " | ".join(cells) + " |")
    judge = result["refusal_detector"]
    return (
        f"`{result['command']}` against `{result['model']}` ({result['base_url']}), {result['date']}: "
        f"{result['prompts']} held-out prompts per mode, answers of at most {result['max_tokens']} tokens, greedy. "
        f"The refusal detector agrees with PyRIT's hand labels on {judge['held_out']:.1%} of the "
        f"{judge['n_held_out']} answers it was not tuned on ({judge['all']:.1%} of all {judge['n']}). "
        f"{result['errors']} requests failed.\n\n" + "\n".join(rows)
    )


def record(result: dict, base_url: str, api_key: str | None, where: Path | None = None) -> None:
    """The overall figures of each mode onto the leaderboard (task "safety/<mode>")."""
    from autan.eval import leaderboard

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        card = httpx.get(f"{base_url.rstrip('/')}/v1/models/{result['model']}", headers=headers, timeout=30).json()
    except (httpx.HTTPError, ValueError):
        card = {}
    rows = []
    for mode, r in result["table"]["all"].items():
        for metric, n in (("unsafe_answered", r["unsafe"]), ("safe_refused", r["safe"])):
            if r[metric] is not None:
                rows.append(leaderboard.Row(result["model"], f"safety/{mode}", metric, r[metric], n,
                                            quantization=str(card.get("quantization") or ""),
                                            command=result["command"]))  # fmt: skip
    leaderboard.record(rows, where)


def write_doc(doc: Path, text: str) -> None:
    start, end = "<!-- eval-safety -->", "<!-- /eval-safety -->"
    body = doc.read_text() if doc.exists() else "# Safety\n"
    if start not in body:
        body = body.rstrip() + f"\n\n### `autan eval safety`\n\n{start}\n{end}\n"
    before, rest = body.split(start, 1)
    doc.write_text(f"{before}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`autan eval safety`'s own arguments, beside `autan eval`'s (`autan.eval.run.add_arguments`):
    --base-url, --model, --api-key, --limit, --seed, --no-record and --leaderboard-db are those."""
    group = parser.add_argument_group("autan eval safety", __doc__.split("\n\n")[0])
    group.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    group.add_argument("--max-tokens", type=int, default=64, help="safety: the longest answer (64)")
    group.add_argument("--parallel", type=int, default=8, help="safety: requests in flight (8)")
    group.add_argument("--out", type=Path, default=None, help="safety: every prompt, answer and judgement as JSON")
    group.add_argument("--docs", type=Path, default=None, help=f"safety: write the table into this file ({DOCS})")


def run(args: argparse.Namespace) -> int:
    """`autan eval safety` with its parsed arguments (`args.usage` refuses as the parser does); by
    default against the server at http://127.0.0.1:8000 and its model smollm2."""
    args.base_url = args.base_url or "http://127.0.0.1:8000"
    args.model = args.model or "smollm2"
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            args.usage(f"--modes: '{m}' is not one of {', '.join(MODES)}")
    if args.limit is not None and args.limit < 1:
        args.usage(f"--limit {args.limit}: must be at least 1")
    examples = suites(args.limit, args.seed)
    items = [Asked(e.source, bool(e.labels), e.text, m) for m in modes for e in examples]
    asyncio.run(run_all(args.base_url.rstrip("/"), args.model, items, args.max_tokens, args.parallel, args.api_key))
    detector = RefusalDetector()
    judged = [i for i in items if not i.error]
    refused = detector.refusals(
        [i.answer for i in judged], [i.prompt for i in judged], [i.finish_reason for i in judged]
    )
    for item, r in zip(judged, refused, strict=True):
        item.refused = r
    result = {
        "command": "autan eval " + " ".join(args.argv),
        "base_url": args.base_url,
        "model": args.model,
        "date": time.strftime("%Y-%m-%d"),
        "modes": modes,
        "prompts": len(examples),
        "max_tokens": args.max_tokens,
        "errors": sum(1 for i in items if i.error),
        "refusal_detector": accuracy(detector),
        "table": table(items, modes),
    }
    if args.out:
        args.out.write_text(json.dumps({**result, "items": [asdict(i) for i in items]}, indent=1))
    if not args.no_record:
        record(result, args.base_url, args.api_key, args.leaderboard_db)
    text = markdown(result)
    if args.docs:
        write_doc(args.docs, text)
    print(text)
    failed = [i for i in items if i.error]
    if failed:
        print(f"{len(failed)} requests failed; the first: {failed[0].error}", file=sys.stderr)
    return 0 if len(failed) < len(items) else 1
