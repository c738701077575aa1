"""Batches: a file of requests run one by one beside interactive traffic, their answers written to
files, in OpenAI's shape (`/v1/batches`, lines with `custom_id`, `method`, `url`, `body`) and
Mistral's (`/v1/batch/jobs`, lines with `custom_id` and `body`, the model named by the job).

A batch's state is in the store and its answers on disk (`$AUTAN_HOME/batches/<id>/`), one line
per request as it finishes: a batch running when the server stops goes on at the next start from
the first request without an answer. The runner yields to interactive requests: it sends its next
request only while no model has a request waiting, and never more than one at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from autan.errors import Invalid, Limited, NotFound
from autan.files import MAX_FILES, files_dir, stamp, utc_now
from autan.registry import home
from autan.store.tables import Batch, File

log = logging.getLogger("autan.batches")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/fim/completions",
             "/v1/moderations")  # fmt: skip
MAX_REQUESTS = 50_000  # lines in one batch file, as OpenAI allows
MAX_ACTIVE = 8  # batches one account may have queued or running
Send = Callable[[str, dict[str, Any], str | None], Awaitable[tuple[int, dict[str, Any]]]]  # (url, body, user) -> answer


def check_batch_file(data: bytes, filename: str) -> int:
    """The number of requests in a batch file; an error names the line and the reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"{filename} is not UTF-8 text: {e}", "file") from None
    seen: set[str] = set()
    for number, line in enumerate((line for line in text.splitlines() if line.strip()), 1):
        where = f"{filename}:{number}"
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise Invalid(f"{where}: not JSON: {e}", "file") from None
        if not isinstance(row, dict) or not isinstance(row.get("body"), dict):
            raise Invalid(f'{where}: a request is an object with a "body" object', "file")
        custom = row.get("custom_id")
        if not isinstance(custom, str) or not custom or len(custom) > 512:
            raise Invalid(f'{where}: "custom_id" must be a string of 1 to 512 characters', "file")
        if custom in seen:
            raise Invalid(f"{where}: custom_id {custom!r} is not unique", "file")
        seen.add(custom)
        if "url" in row and row["url"] not in ENDPOINTS:
            raise Invalid(f"{where}: url {row['url']!r} is not one of {', '.join(ENDPOINTS)}", "file")
        if row.get("method", "POST") != "POST":
            raise Invalid(f"{where}: method {row['method']!r}: batches send POST requests", "file")
    if not seen:
        raise Invalid(f"{filename} has no requests", "file")
    if len(seen) > MAX_REQUESTS:
        raise Invalid(f"{filename} has {len(seen)} requests; a batch takes at most {MAX_REQUESTS}", "file")
    return len(seen)


def batch_dir(batch_id: str) -> Path:
    return home() / "batches" / batch_id


OPENAI_STATUS = {"queued": "validating", "running": "in_progress", "completed": "completed", "failed": "failed",
                 "cancelling": "cancelling", "cancelled": "cancelled"}  # fmt: skip
MISTRAL_STATUS = {"queued": "QUEUED", "running": "RUNNING", "completed": "SUCCESS", "failed": "FAILED",
                  "cancelling": "CANCELLATION_REQUESTED", "cancelled": "CANCELLED"}  # fmt: skip


def card(b: Batch) -> dict[str, Any]:
    """A batch as its API describes it."""
    failed = b.failed
    if b.shape == "mistral":
        return {"id": b.id, "object": "batch", "input_files": [b.input_file_id], "endpoint": b.endpoint,
                "model": b.model, "metadata": b.meta or {}, "output_file": b.output_file_id,
                "error_file": b.error_file_id, "errors": [{"message": b.error}] if b.error else [],
                "status": MISTRAL_STATUS[b.status], "created_at": stamp(b.created_at),
                "total_requests": b.total, "completed_requests": b.completed + failed,
                "succeeded_requests": b.completed, "failed_requests": failed, "started_at": stamp(b.started_at),
                "completed_at": stamp(b.finished_at)}  # fmt: skip
    errors = {"object": "list", "data": [{"code": "batch_failed", "message": b.error}]} if b.error else None
    return {"id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": errors, "input_file_id": b.input_file_id,
            "completion_window": "24h", "status": OPENAI_STATUS[b.status], "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id, "created_at": stamp(b.created_at),
            "in_progress_at": stamp(b.started_at), "completed_at": stamp(b.finished_at) if b.status == "completed"
            else None, "cancelled_at": stamp(b.finished_at) if b.status == "cancelled" else None,
            "failed_at": stamp(b.finished_at) if b.status == "failed" else None,
            "request_counts": {"total": b.total, "completed": b.completed, "failed": failed},
            "metadata": b.meta or {}}  # fmt: skip


class Batches:
    """Batches in the store, for one caller at a time (`user_id`), and the runner."""

    def __init__(self, store: Any):
        self.store = store
        self.closing = False

    def create(self, user_id: str | None, shape: str, file_id: str, endpoint: str, model: str | None,
               metadata: dict | None) -> dict[str, Any]:  # fmt: skip
        if endpoint not in ENDPOINTS:
            raise Invalid(f"endpoint {endpoint!r} is not one of {', '.join(ENDPOINTS)}", "endpoint")
        with self.store.session() as db:
            active = (Batch.user_id == user_id) & Batch.status.in_(("queued", "running", "cancelling"))
            if (count := db.scalar(select(func.count()).select_from(Batch).where(active)) or 0) >= MAX_ACTIVE:
                raise Limited(f"this account has {count} batches queued or running, the most it may")
            source = db.get(File, file_id)
            if source is None or source.user_id != user_id:
                raise NotFound(f"no file '{file_id[:64]}'")
            if source.purpose != "batch":
                raise Invalid(f"file '{file_id}' was uploaded for {source.purpose!r}, not 'batch'", "input_file_id")
            rows = [json.loads(line) for line in _lines(file_id)]
            if wrong := [r["custom_id"] for r in rows if r.get("url", endpoint) != endpoint]:
                raise Invalid(f"request {wrong[0]!r} is for another endpoint than {endpoint}", "input_file_id")
            batch = Batch(id="batch_" + uuid.uuid4().hex, user_id=user_id, shape=shape, endpoint=endpoint,
                          input_file_id=file_id, model=model, status="queued", total=len(rows), completed=0,
                          failed=0, meta=metadata or {}, created_at=utc_now())  # fmt: skip
            db.add(batch)
            db.flush()
            return card(batch)

    def add_requests(self, user_id: str | None, requests: list[dict[str, Any]]) -> str:
        """Requests sent inline (Mistral's `requests`) as a batch file of the caller's."""
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode()
        check_batch_file(data, "requests")
        with self.store.session() as db:
            held = db.scalar(select(func.count()).select_from(File).where(File.user_id == user_id)) or 0
        if held >= MAX_FILES:
            raise Limited(f"this account holds {held} files, the most it may: delete some first")
        return self._keep_file(user_id, "requests.jsonl", data, "batch")

    def _owned(self, db: Any, user_id: str | None, batch_id: str) -> Batch:
        found = db.get(Batch, batch_id)
        if found is None or found.user_id != user_id:
            raise NotFound(f"no batch '{batch_id[:64]}'")
        return found

    def get(self, user_id: str | None, batch_id: str) -> dict[str, Any]:
        with self.store.session() as db:
            return card(self._owned(db, user_id, batch_id))

    def list(self, user_id: str | None, shape: str) -> list[dict[str, Any]]:
        with self.store.session() as db:
            stmt = select(Batch).where(Batch.user_id == user_id, Batch.shape == shape).order_by(Batch.created_at.desc())
            return [card(b) for b in db.scalars(stmt).all()]

    def cancel(self, user_id: str | None, batch_id: str) -> dict[str, Any]:
        with self.store.session() as db:
            batch = self._owned(db, user_id, batch_id)
            if batch.status == "queued":
                batch.status, batch.finished_at = "cancelled", utc_now()
            elif batch.status == "running":
                batch.status = "cancelling"  # the runner stops before its next request
            return card(batch)

    # the runner

    async def run(self, send: Send, busy: Callable[[], bool]) -> None:
        """Run batches, oldest first, until the server closes; `busy()` says interactive requests wait."""
        while not self.closing:
            try:
                found = await asyncio.to_thread(self._next)
                if found is None:
                    await asyncio.sleep(0.5)
                    continue
                await self._run(found, send, busy)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store out of reach for a while: try again
                log.exception("the batch runner could not go on; trying again shortly")
                await asyncio.sleep(5)

    def _next(self) -> str | None:
        with self.store.session() as db:
            stmt = select(Batch).where(Batch.status.in_(("queued", "running", "cancelling"))).order_by(Batch.created_at)
            batch = db.scalars(stmt.limit(1)).first()
            if batch is None:
                return None
            if batch.status == "cancelling":
                batch.status, batch.finished_at = "cancelled", utc_now()
                return None
            if batch.status == "queued":
                batch.status, batch.started_at = "running", utc_now()
            return batch.id

    async def _run(self, batch_id: str, send: Send, busy: Callable[[], bool]) -> None:
        with self.store.session() as db:
            batch = db.get(Batch, batch_id)
            owner, endpoint, model, file_id = batch.user_id, batch.endpoint, batch.model, batch.input_file_id
        out = batch_dir(batch_id)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("output.jsonl", "errors.jsonl"):
            _mend(out / name)
        answered = _answered(out / "output.jsonl") | _answered(out / "errors.jsonl")  # from before a restart
        for line in _lines(file_id):
            row = json.loads(line)
            if row["custom_id"] in answered:
                continue
            while busy() and not self.closing:  # interactive requests first
                await asyncio.sleep(0.05)
            if self.closing or await asyncio.to_thread(self._stopping, batch_id):
                return
            body = dict(row["body"])
            if model and "model" not in body:
                body["model"] = model
            try:
                status, answer = await send(endpoint, body, owner)
            except Exception as e:  # whatever went wrong, this request is answered and the batch goes on
                log.exception("batch %s: request %s failed", batch_id, row["custom_id"])
                status, answer = 500, {"message": f"internal error: {type(e).__name__}"}
            error = None if status < 400 else {"code": str(status), "message": _message(answer)}
            result = {"id": "batch_req_" + uuid.uuid4().hex, "custom_id": row["custom_id"], "error": error,
                      "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": answer}}  # fmt: skip
            _append(out / ("output.jsonl" if status < 400 else "errors.jsonl"), result)
            await asyncio.to_thread(self._count, batch_id, status < 400)
            await self._hold()
        await asyncio.to_thread(self._finish, batch_id, owner)

    async def _hold(self) -> None:
        """While the file named by $AUTAN_BATCH_HOLD exists, wait after each answer (the server
        stopping ends the wait). Tests restart the server under a batch held mid-way this way."""
        hold = os.environ.get("AUTAN_BATCH_HOLD")
        while hold and Path(hold).exists() and not self.closing:
            await asyncio.sleep(0.1)

    def _stopping(self, batch_id: str) -> bool:
        with self.store.session() as db:
            batch = db.get(Batch, batch_id)
            if batch is None:
                return True
            if batch.status == "cancelling":
                batch.status, batch.finished_at = "cancelled", utc_now()
                return True
            return False

    def _count(self, batch_id: str, ok: bool) -> None:
        column = Batch.completed if ok else Batch.failed
        with self.store.session() as db:
            db.execute(update(Batch).where(Batch.id == batch_id).values({column: column + 1}))

    def _finish(self, batch_id: str, owner: str | None) -> None:
        """The answers as files of the owner's, and the batch completed."""
        out = batch_dir(batch_id)
        ids = {}
        for name in ("output.jsonl", "errors.jsonl"):
            if (out / name).is_file() and (out / name).stat().st_size:
                ids[name] = self._keep_file(owner, f"{batch_id}_{name}", (out / name).read_bytes())
        with self.store.session() as db:
            batch = db.get(Batch, batch_id)
            if batch is not None:
                batch.status, batch.finished_at = "completed", utc_now()
                batch.output_file_id, batch.error_file_id = ids.get("output.jsonl"), ids.get("errors.jsonl")

    def _keep_file(self, owner: str | None, filename: str, data: bytes, purpose: str = "batch_output") -> str:
        file_id = "file-" + uuid.uuid4().hex[:24]
        files_dir().mkdir(parents=True, exist_ok=True)
        (files_dir() / f"{file_id}.jsonl").write_bytes(data)
        with self.store.session() as db:
            db.add(File(id=file_id, user_id=owner, filename=filename, purpose=purpose, bytes=len(data),
                        num_lines=data.count(b"\n"), created_at=utc_now()))  # fmt: skip
        return file_id


def _message(answer: dict[str, Any]) -> str | None:
    """An error answer's message, in our envelope or Anthropic's."""
    inner = answer.get("error")
    return inner.get("message") if isinstance(inner, dict) else answer.get("message")


def _lines(file_id: str) -> list[str]:
    text = (files_dir() / f"{file_id}.jsonl").read_text()
    return [line for line in text.splitlines() if line.strip()]


def _answered(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    found = set()
    for line in path.read_text().splitlines():
        try:
            found.add(json.loads(line)["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash: its request runs again
    return found


def _mend(path: Path) -> None:
    """Drop a last line a crash tore (its request runs again), so what is appended stays whole."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
