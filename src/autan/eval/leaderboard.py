"""Every evaluation result, kept: `$AUTAN_HOME/eval/leaderboard.db` (SQLite; `$AUTAN_LEADERBOARD`
names another file).

A row is one figure of one model on one task: the model as it ran (its id, the SHA256 of its
file, its quantization, an adapter), the task and metric, the score and its standard error, how
many examples, the speed and memory of the run, the date and the command that made it. `autan
eval safety` adds its figures here too (task "safety/<mode>"). The leaderboard shows each
model's newest figure per task and metric.
"""

from __future__ import annotations

import datetime
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autan.registry import home

SCHEMA = """
create table if not exists results (
    id integer primary key,
    model text not null,
    file_sha256 text not null default '',
    quantization text not null default '',
    adapter text not null default '',
    task text not null,
    metric text not null,
    value real not null,
    stderr real,
    n integer not null,
    shots integer not null default 0,
    tokens_per_second real,
    memory_bytes integer,
    date text not null,
    command text not null default ''
)
"""


@dataclass
class Row:
    model: str
    task: str
    metric: str
    value: float
    n: int
    stderr: float | None = None
    file_sha256: str = ""
    quantization: str = ""
    adapter: str = ""
    shots: int = 0
    tokens_per_second: float | None = None
    memory_bytes: int | None = None
    date: str = ""
    command: str = ""


def path() -> Path:
    """`$AUTAN_LEADERBOARD`, else `$AUTAN_HOME/eval/leaderboard.db`."""
    return Path(os.environ.get("AUTAN_LEADERBOARD") or home() / "eval" / "leaderboard.db")


def _connect(where: Path | None = None) -> sqlite3.Connection:
    where = where or path()
    where.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(where)
    db.execute(SCHEMA)
    return db


SECRET_OPTION = re.compile(r"(--(?:judge-)?api-key(?:=|\s+))\S+")
URL_USER = re.compile(r"(\w+://)[^/@\s]+@")


def without_secrets(command: str) -> str:
    """The command as it may be shown to anyone: an --api-key's value and a URL's user and
    password are masked."""
    return URL_USER.sub(r"\1***@", SECRET_OPTION.sub(r"\1***", command))


def record(rows: Sequence[Row], where: Path | None = None) -> None:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    names = [f.name for f in fields(Row)]
    with _connect(where) as db:
        for row in rows:
            values = asdict(row) | {"date": row.date or now, "command": without_secrets(row.command)}
            db.execute(f"insert into results ({', '.join(names)}) values ({', '.join('?' * len(names))})",
                       [values[n] for n in names])  # fmt: skip


def newest(where: Path | None = None) -> list[Row]:
    """Each (model, file, quantization, adapter, task, metric)'s newest row."""
    names = [f.name for f in fields(Row)]
    with _connect(where) as db:
        found = db.execute(
            f"select {', '.join(names)} from results where id in (select max(id) from results group by "
            "model, file_sha256, quantization, adapter, task, metric, shots) order by model, quantization, task, metric"
        ).fetchall()
    return [Row(**dict(zip(names, r, strict=True))) for r in found]


def table(rows: Sequence[Row]) -> dict:
    """The leaderboard as the chat app draws it: one entry per model (as it ran) with its
    figures by "task/metric", its best-known speed and memory."""
    models: dict[tuple, dict] = {}
    for r in rows:
        key = (r.model, r.file_sha256, r.quantization, r.adapter)
        entry = models.setdefault(key, {
            "model": r.model, "file_sha256": r.file_sha256, "quantization": r.quantization,
            "adapter": r.adapter, "scores": {}, "tokens_per_second": None, "memory_bytes": None,
        })  # fmt: skip
        name = f"{r.task}/{r.metric}" + (f"/{r.shots}-shot" if r.shots else "")
        entry["scores"][name] = {"value": r.value, "stderr": r.stderr, "n": r.n, "date": r.date, "command": r.command}
        if r.tokens_per_second is not None:
            entry["tokens_per_second"] = max(entry["tokens_per_second"] or 0, r.tokens_per_second)
        if r.memory_bytes is not None:
            entry["memory_bytes"] = max(entry["memory_bytes"] or 0, r.memory_bytes)
    columns = sorted({name for e in models.values() for name in e["scores"]})
    return {"columns": columns, "models": list(models.values())}


def render(rows: Sequence[Row]) -> str:
    """The leaderboard as a text table: models down, task/metric across (percent ± stderr; MT-Bench
    as its 1-10 rating)."""
    board = table(rows)
    if not board["models"]:
        return f"no results yet in {path()}: run `autan eval TASK` first"
    header = ["model", "quantization", *board["columns"], "tok/s"]
    lines = [header]
    for m in board["models"]:
        cells = [m["model"] + (f" + {m['adapter']}" if m["adapter"] else ""), m["quantization"] or "-"]
        for c in board["columns"]:
            s = m["scores"].get(c)
            if s is None:
                cells.append("-")
            elif c.startswith("safety/"):
                cells.append(f"{s['value']:.1%}")
            elif c.startswith("mt_bench"):  # a rating 1-10
                err = f" ±{s['stderr']:.2f}" if s["stderr"] is not None else ""
                cells.append(f"{s['value']:.2f}{err}")
            else:
                err = f" ±{100 * s['stderr']:.1f}" if s["stderr"] is not None else ""
                cells.append(f"{100 * s['value']:.1f}{err}")
        cells.append(f"{m['tokens_per_second']:.0f}" if m["tokens_per_second"] else "-")
        lines.append(cells)
    widths = [max(len(str(line[k])) for line in lines) for k in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
