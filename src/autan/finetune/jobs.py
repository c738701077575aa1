"""Fine-tuning jobs: files uploaded for training, jobs kept in the store, and the worker that runs
them one at a time in the server's process.

A job's state is in the database (SQLite or PostgreSQL), so it survives a restart: a job that was
running when the server stopped is queued again and goes on from its newest checkpoint. Its
output is `$AUTAN_HOME/fine_tuning/<job id>/`; the adapter it makes is served as
`MODEL:ft-<suffix>-<id>` once it succeeds (and again after a restart).

Jobs and files belong to whoever made them (an account, or the single owner of a store without
accounts): nobody sees or touches another's. The model a job makes is served like any other:
every caller of the server may use it (see docs/finetune.md).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from autan.batches import check_batch_file
from autan.errors import AutanError, Conflict, Invalid, Limited, NotFound
from autan.files import (
    MAX_FILE_BYTES,
    MAX_FILES,
    file_card,
    files_dir,
    stamp,
    utc_now,
)
from autan.finetune.data import DataError, check_example
from autan.finetune.train import (
    Progress,
    TrainConfig,
    longest_fitting,
    peak_bytes,
    train,
    training_weights,
)
from autan.memory import give_memory_back
from autan.registry import home
from autan.store.tables import File, FineTuningEvent, FineTuningJob

log = logging.getLogger("autan.finetune")
DEFAULTS = {"n_epochs": 3, "batch_size": 4, "learning_rate": 2e-4}
OPENAI_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
MAX_SEQ_LEN = 8192  # a job's longest example (and pack): one step on it takes minutes on a CPU
MAX_ACTIVE = 8  # fine-tuning jobs one account may have queued or running
Ready = Callable[[str, str, Path, "str | None"], None]  # serves (base, name, adapter dir, owner's user id)


def check_training_file(data: bytes, filename: str) -> int:
    """The number of examples in an uploaded JSONL file; an error names the line and reason."""
    if len(data) > MAX_FILE_BYTES:
        raise Invalid(f"{filename} is {len(data)} bytes; the limit is {MAX_FILE_BYTES}", "file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"{filename} is not UTF-8 text: {e}", "file") from None
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            check_example(json.loads(line), f"{filename}:{number}")
        except ValueError as e:
            raise Invalid(f"{filename}:{number}: not JSON: {e}", "file") from None
        except RecursionError:
            raise Invalid(f"{filename}:{number}: nested too deeply to read", "file") from None
        except DataError as e:
            raise Invalid(str(e), "file") from None
        count += 1
    if not count:
        raise Invalid(f"{filename} has no examples", "file")
    return count


class Jobs:
    """Files and jobs in the store, for one caller at a time (`user_id`), and the worker."""

    def __init__(self, store: Any, memory_budget: int | None = None):
        self.store = store
        self.memory_budget = memory_budget or default_budget()  # bytes one job's training may hold
        self._last_owner: str | None = "-"  # whose job ran last: the next goes to another account if one waits
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._unservable: set[str] = set()  # succeeded jobs whose adapter could not be served

    # files

    def add_file(self, user_id: str | None, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        checks = {"fine-tune": check_training_file, "batch": check_batch_file}
        if purpose not in checks:
            raise Invalid(f"purpose {purpose!r}: the files taken are 'fine-tune' and 'batch' ones", "purpose")
        if len(data) > MAX_FILE_BYTES:
            raise Invalid(f"{filename} is {len(data)} bytes; the limit is {MAX_FILE_BYTES}", "file")
        lines = checks[purpose](data, filename)
        with self.store.session() as db:
            held = db.scalar(select(func.count()).select_from(File).where(File.user_id == user_id)) or 0
        if held >= MAX_FILES:
            raise Limited(f"this account holds {held} files, the most it may: delete some first")
        file_id = "file-" + uuid.uuid4().hex[:24]
        files_dir().mkdir(parents=True, exist_ok=True)
        partial = files_dir() / f"{file_id}.partial"
        partial.write_bytes(data)
        partial.replace(files_dir() / f"{file_id}.jsonl")
        with self.store.session() as db:
            row = File(id=file_id, user_id=user_id, filename=filename[:256], purpose=purpose, bytes=len(data),
                       num_lines=lines, created_at=utc_now())  # fmt: skip
            db.add(row)
            return file_card(row)

    def _file(self, db: Any, user_id: str | None, file_id: str) -> File:
        return _owned(db, File, user_id, file_id, "file")

    def list_files(self, user_id: str | None) -> list[dict[str, Any]]:
        with self.store.session() as db:
            rows = db.scalars(select(File).where(File.user_id == user_id).order_by(File.created_at)).all()
            return [file_card(f) for f in rows]

    def get_file(self, user_id: str | None, file_id: str) -> dict[str, Any]:
        with self.store.session() as db:
            return file_card(self._file(db, user_id, file_id))

    def file_content(self, user_id: str | None, file_id: str) -> bytes:
        with self.store.session() as db:
            self._file(db, user_id, file_id)
        return (files_dir() / f"{file_id}.jsonl").read_bytes()

    def delete_file(self, user_id: str | None, file_id: str) -> dict[str, Any]:
        from autan.store.tables import Batch

        with self.store.session() as db:
            found = self._file(db, user_id, file_id)
            live = db.scalars(select(FineTuningJob).where(FineTuningJob.status.in_(("queued", "running")))).all()
            if users := [j.id for j in live if file_id in (j.training_files or []) + (j.validation_files or [])]:
                raise Conflict(f"file '{file_id}' is in use by fine-tuning job {users[0]}: cancel the job first")
            batches = db.scalars(select(Batch.id).where(Batch.input_file_id == file_id,
                                                        Batch.status.in_(("queued", "running")))).all()  # fmt: skip
            if batches:
                raise Conflict(f"file '{file_id}' is in use by batch {batches[0]}: cancel the batch first")
            db.delete(found)
        (files_dir() / f"{file_id}.jsonl").unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    # jobs

    def create(self, user_id: str | None, shape: str, body: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
        """A job from OpenAI's request (`training_file`) or Mistral's (`training_files`)."""
        model = body.get("model")
        if not isinstance(model, str) or model not in models:
            raise NotFound(f"model '{str(model)[:100]}' is not served here; available: {', '.join(models)}")
        if shape == "mistral":
            given = body.get("training_files") or []
            given = given if isinstance(given, list) else []
            training = [t.get("file_id") if isinstance(t, dict) else t for t in given]
            validation = body.get("validation_files") or []
        else:
            training = [body.get("training_file")]
            validation = [body["validation_file"]] if body.get("validation_file") is not None else []
        names = ("training_files", "validation_files") if shape == "mistral" else ("training_file", "validation_file")
        if not training or not all(isinstance(t, str) and len(t) <= 64 for t in training):
            raise Invalid(f"{names[0]}: name the training file(s) by id", names[0])
        if not isinstance(validation, list) or not all(isinstance(v, str) and len(v) <= 64 for v in validation):
            raise Invalid(f"{names[1]}: name the validation file{'s' if shape == 'mistral' else ''} by id", names[1])
        hyper = _hyperparameters(shape, body)
        hyper["seq_len"] = self._seq_len(model, models[model], hyper)
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,40}", suffix)):
            raise Invalid(f"suffix {str(suffix)[:60]!r} must be 1 to 40 ASCII letters, digits and '-'", "suffix")
        seed = body.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise Invalid(f"seed {seed!r} must be an integer in [0, 2^31)", "seed")
        job_id = "ftjob-" + uuid.uuid4().hex[:24]
        with self.store.session() as db:
            active = (FineTuningJob.user_id == user_id) & FineTuningJob.status.in_(("queued", "running"))
            if (waiting := db.scalar(select(func.count()).select_from(FineTuningJob).where(active)) or 0) >= MAX_ACTIVE:
                raise Limited(f"this account has {waiting} fine-tuning jobs queued or running, the most it may")
            for f in training + validation:
                if (purpose := self._file(db, user_id, f).purpose) != "fine-tune":
                    raise Invalid(f"file '{f}' was uploaded for {purpose!r}, not 'fine-tune'", "training_file")
            job = FineTuningJob(id=job_id, user_id=user_id, shape=shape, model=model, training_files=training,
                                validation_files=validation, hyperparameters=hyper, suffix=suffix, seed=seed,
                                status="queued", created_at=utc_now(), modified_at=utc_now())  # fmt: skip
            db.add(job)
            db.flush()  # the job's row first: the event refers to it
            db.add(FineTuningEvent(job_id=job_id, created_at=utc_now(), level="info", message="Job queued"))
            db.flush()
            card = self._card(db, job)
        self.wake.set()
        return card

    def _seq_len(self, name: str, served: Any, hyper: dict[str, Any]) -> int:
        """The longest example (and pack) a job trains on: what was asked if it fits the model's
        context and the memory budget, else a 400 that says what fits; unasked, the most that
        fits, up to 2,048."""
        config = served.engine.engine.model.config
        asked, batch = hyper.get("seq_len"), hyper["batch_size"]
        weights = training_weights(config, served.path)
        most = min(MAX_SEQ_LEN, config.max_seq_len)
        fits = longest_fitting(config, weights, self.memory_budget, most)
        budget = f"{self.memory_budget / 2**30:.1f} GiB (autan serve --finetune-memory)"
        if fits < 64:
            raise Invalid(f"training {name} needs more memory than the fine-tuning budget of {budget}", "model")
        if asked is None:
            return min(fits, 2048)
        if asked > config.max_seq_len:
            raise Invalid(f"seq_len {asked} is longer than {name}'s context of {config.max_seq_len} tokens", "seq_len")
        if asked > fits:
            need = peak_bytes(config, asked, weights) / 2**30
            raise Invalid(
                f"seq_len {asked} with batch_size {batch} needs about {need:.1f} GiB to train {name}, more than the "
                f"budget of {budget}: at most seq_len {fits} fits. (A batch trains in packs of at most seq_len "
                "tokens, one after another: batch_size changes the time a step takes, not its memory.)",
                "seq_len",
            )
        return asked

    def _job(self, db: Any, user_id: str | None, job_id: str) -> FineTuningJob:
        return _owned(db, FineTuningJob, user_id, job_id, "fine-tuning job")

    def list(self, user_id: str | None) -> list[dict[str, Any]]:
        with self.store.session() as db:
            stmt = (
                select(FineTuningJob).where(FineTuningJob.user_id == user_id).order_by(FineTuningJob.created_at.desc())
            )
            return [self._card(db, j) for j in db.scalars(stmt).all()]

    def get(self, user_id: str | None, job_id: str) -> dict[str, Any]:
        with self.store.session() as db:
            return self._card(db, self._job(db, user_id, job_id), detail=True)

    def cancel(self, user_id: str | None, job_id: str) -> dict[str, Any]:
        with self.store.session() as db:
            job = self._job(db, user_id, job_id)
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", utc_now()
                db.add(FineTuningEvent(job_id=job.id, created_at=utc_now(), level="info", message="Job cancelled"))
            elif job.status == "running":
                job.cancel_requested = True  # the worker stops at its next step
            job.modified_at = utc_now()
            db.flush()
            return self._card(db, job)

    def events(self, user_id: str | None, job_id: str) -> list[dict[str, Any]]:
        with self.store.session() as db:
            self._job(db, user_id, job_id)
            stmt = select(FineTuningEvent).where(FineTuningEvent.job_id == job_id).order_by(FineTuningEvent.id.desc())
            return [
                {
                    "object": "fine_tuning.job.event",
                    "id": f"ftevent-{e.id}",
                    "created_at": stamp(e.created_at),
                    "level": e.level,
                    "message": e.message,
                    "data": e.data or {},
                    "type": "metrics" if e.data and "step" in e.data else "message",
                }
                for e in db.scalars(stmt).all()
            ]

    def _card(self, db: Any, job: FineTuningJob, detail: bool = False) -> dict[str, Any]:
        if job.shape == "mistral":
            status = {"queued": "QUEUED", "running": "RUNNING", "succeeded": "SUCCESS", "failed": "FAILED",
                      "cancelled": "CANCELLED"}[job.status]  # fmt: skip
            card: dict[str, Any] = {
                "id": job.id, "object": "job", "job_type": "FT", "auto_start": True, "model": job.model,
                "status": status, "created_at": stamp(job.created_at), "modified_at": stamp(job.modified_at),
                "training_files": job.training_files, "validation_files": job.validation_files,
                "hyperparameters": job.hyperparameters, "fine_tuned_model": job.fine_tuned_model,
                "suffix": job.suffix, "trained_tokens": job.trained_tokens,
            }  # fmt: skip
            if detail:
                stmt = select(FineTuningEvent).where(FineTuningEvent.job_id == job.id).order_by(FineTuningEvent.id)
                events = db.scalars(stmt).all()
                card["events"] = [{"name": e.message, "data": e.data or {}, "created_at": stamp(e.created_at)}
                                  for e in events]  # fmt: skip
                card["checkpoints"] = [
                    {
                        "metrics": {"train_loss": e.data.get("train_loss"), "valid_loss": e.data.get("valid_loss")},
                        "step_number": e.data["step"],
                        "created_at": stamp(e.created_at),
                    }
                    for e in events
                    if e.data and e.data.get("checkpoint")
                ]
            return card
        error = {"code": "training_failed", "message": job.error, "param": None} if job.error else None
        return {
            "id": job.id, "object": "fine_tuning.job", "model": job.model, "created_at": stamp(job.created_at),
            "finished_at": stamp(job.finished_at), "fine_tuned_model": job.fine_tuned_model,
            "organization_id": "autan", "result_files": [], "status": job.status,
            "training_file": job.training_files[0], "validation_file": (job.validation_files or [None])[0],
            "hyperparameters": {k: v for k, v in job.hyperparameters.items() if k in OPENAI_HYPERPARAMETERS},
            "trained_tokens": job.trained_tokens, "error": error, "seed": job.seed, "suffix": job.suffix,
            "method": {"type": "supervised"},
        }  # fmt: skip

    # the worker

    def start(self, models: dict[str, Any], ready: Ready) -> None:
        """Run queued jobs in a thread; `ready(base, name, path, owner)` serves each adapter made, to
        the account whose job made it. Jobs that were running when the server stopped are queued
        again; adapters made before are served."""
        with self.store.session() as db:
            for job in db.scalars(select(FineTuningJob).where(FineTuningJob.status == "running")).all():
                job.status = "queued"
                db.add(FineTuningEvent(job_id=job.id, created_at=utc_now(), level="info",
                                       message="Job resumed after a restart"))  # fmt: skip
        self._serve_finished(models, ready)
        self._thread = threading.Thread(target=self._loop, args=(models, ready), name="fine-tuning", daemon=True)
        self._thread.start()

    def _serve_finished(self, models: dict[str, Any], ready: Ready) -> None:
        """Serve the adapters of succeeded jobs not served here yet: made before a restart, or by
        another server on the same store (replicas sharing $AUTAN_HOME's fine_tuning folder)."""
        with self.store.session() as db:
            done = db.scalars(select(FineTuningJob).where(FineTuningJob.status == "succeeded")).all()
            finished = [(j.model, j.fine_tuned_model, j.id, j.user_id) for j in done]
        for base, model_id, job_id, owner in finished:
            if base in models and model_id and model_id not in models and job_id not in self._unservable:
                try:
                    ready(base, model_id.rpartition(":")[2], job_dir(job_id), owner)
                except Exception as e:  # its folder gone, or the base model changed: the others still serve
                    log.warning("the adapter of fine-tuning job %s cannot be served: %s", job_id, e)
                    self._unservable.add(job_id)  # said once, not every few seconds

    def close(self) -> None:
        self._closing = True
        self.wake.set()

    def _loop(self, models: dict[str, Any], ready: Ready) -> None:
        while not self._closing:
            try:
                self._next(models, ready)
            except Exception:  # the store out of reach for a while (a database restarting): try again
                log.exception("the fine-tuning worker could not reach the store; trying again shortly")
                self.wake.wait(5)

    def _next(self, models: dict[str, Any], ready: Ready) -> None:
        """Run the oldest queued job; with none, wait a little and serve adapters finished elsewhere."""
        job_id = self.pick()
        if job_id is None:
            self.wake.wait(5)
            self.wake.clear()
            if not self._closing:
                self._serve_finished(models, ready)
            return
        if not self._claim(job_id):
            return  # cancelled in between, or taken by another server on the same store
        try:
            self._run(job_id, models, ready)
        except Exception:  # e.g. its row deleted with its account: the worker goes on with the next
            log.exception("fine-tuning job %s ended unexpectedly", job_id)
        finally:
            gc.collect()  # the job's model and tensors, then their pages
            give_memory_back()

    def pick(self) -> str | None:
        """The next job to run: the oldest queued one of another account than the last job's, if
        one waits (so one account's queue never holds another's job back), else the oldest."""
        with self.store.session() as db:
            stmt = select(FineTuningJob.id, FineTuningJob.user_id).where(FineTuningJob.status == "queued")
            queued = db.execute(stmt.order_by(FineTuningJob.created_at)).all()
        chosen = next((row for row in queued if row.user_id != self._last_owner), queued[0] if queued else None)
        if chosen is None:
            return None
        self._last_owner = chosen.user_id
        return chosen.id

    def _claim(self, job_id: str) -> bool:
        """Mark a queued job running, unless something else changed it first."""
        with self.store.session() as db:
            claimed = db.execute(
                update(FineTuningJob)
                .where(FineTuningJob.id == job_id, FineTuningJob.status == "queued")
                .values(status="running", modified_at=utc_now())
            )
            return claimed.rowcount == 1

    def _event(self, job_id: str, message: str, data: dict | None = None, level: str = "info", **changes: Any) -> None:
        with self.store.session() as db:
            job = db.get(FineTuningJob, job_id)
            if job is None:
                return  # deleted with its account
            db.add(FineTuningEvent(job_id=job_id, created_at=utc_now(), level=level, message=message, data=data))
            if changes:
                for k, v in changes.items():
                    setattr(job, k, v)
                job.modified_at = utc_now()

    def _cancelled(self, job_id: str) -> bool:
        with self.store.session() as db:
            job = db.get(FineTuningJob, job_id)
            return self._closing or job is None or bool(job.cancel_requested)

    def _hold(self, job_id: str) -> None:
        """While the file named by $AUTAN_FINETUNE_HOLD exists, wait at the checkpoint just written
        (a cancel or the server stopping still ends the wait). Tests restart the server under a job
        held mid-run this way, whatever the machine's speed."""
        hold = os.environ.get("AUTAN_FINETUNE_HOLD")
        while hold and Path(hold).exists() and not self._cancelled(job_id):
            time.sleep(0.1)

    def _run(self, job_id: str, models: dict[str, Any], ready: Ready) -> None:
        with self.store.session() as db:
            job = db.get(FineTuningJob, job_id)
            base, hyper, seed, suffix, owner = job.model, dict(job.hyperparameters), job.seed, job.suffix, job.user_id
            training, validation = list(job.training_files), list(job.validation_files)
        out = job_dir(job_id)
        try:
            if base not in models:
                raise AutanError(f"model '{base}' is not served by this server any more")
            out.mkdir(parents=True, exist_ok=True)
            data = _joined(out / "train.jsonl", training)  # kept: a resumed job reads it again
            val = _joined(out / "val.jsonl", validation) if validation else None
            self._event(job_id, "Job started")
            config = _config(hyper, seed)
            every = 1

            def report(p: Progress) -> None:
                nonlocal every
                every = max(1, p.steps // 50)  # about fifty metric events a job
                if p.kind == "step" and (p.step % every == 0 or p.step == p.steps):
                    self._event(job_id, f"Step {p.step}/{p.steps}: training loss {p.loss:.4f}",
                                {"step": p.step, "total_steps": p.steps, "train_loss": p.loss,
                                 "learning_rate": p.learning_rate, "tokens_per_second": p.tokens_per_second,
                                 "eta_seconds": p.eta_seconds})  # fmt: skip
                elif p.kind == "eval":
                    self._event(job_id, f"Step {p.step}: validation loss {p.val_loss:.4f}",
                                {"step": p.step, "total_steps": p.steps, "valid_loss": p.val_loss})  # fmt: skip
                elif p.kind == "checkpoint":
                    self._event(job_id, f"Checkpoint at step {p.step}",
                                {"step": p.step, "train_loss": p.loss, "checkpoint": True})  # fmt: skip
                    self._hold(job_id)

            device = str(models[base].engine.engine.model.device)
            result = train(models[base].path, data, out, config, val, device, resume=True, report=report,
                           stop=lambda: self._cancelled(job_id))  # fmt: skip
        except Exception as e:  # the job fails, with the reason (no path of the server's); the server goes on
            reason = str(e).replace(str(home()), "$AUTAN_HOME")
            self._event(job_id, f"Job failed: {reason}", level="error", status="failed", error=reason,
                        finished_at=utc_now())  # fmt: skip
            return
        if result.stopped:
            if self._closing:
                return  # the server is stopping: the job stays running, and is queued again at the next start
            self._event(job_id, "Job cancelled", status="cancelled", finished_at=utc_now())
            return
        name = f"ft-{suffix}-{job_id[-8:]}" if suffix else f"ft-{job_id[-8:]}"
        try:
            ready(base, name, out, owner)
        except Exception as e:
            self._event(job_id, f"Job failed: the adapter could not be served: {e}", level="error", status="failed",
                        error=str(e), finished_at=utc_now())  # fmt: skip
            return
        self._event(job_id, "Job succeeded", {"train_loss": result.train_loss, "valid_loss": result.val_loss},
                    status="succeeded", fine_tuned_model=f"{base}:{name}", trained_tokens=result.tokens,
                    finished_at=utc_now())  # fmt: skip


def default_budget() -> int:
    """Four tenths of the machine's memory: the server and its models keep the rest."""
    try:
        return int(0.4 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 4 * 2**30


def job_dir(job_id: str) -> Path:
    return home() / "fine_tuning" / job_id


def _joined(target: Path, file_ids: list[str]) -> Path:
    if target.is_file():  # a job resumed after a restart trains on what it started with
        return target
    target.write_bytes(b"".join((files_dir() / f"{f}.jsonl").read_bytes().rstrip(b"\n") + b"\n" for f in file_ids))
    return target


def _number(body: dict, key: str, kind: type, low: float, high: float, default: Any) -> Any:
    value = body.get(key, default)
    if value == "auto" or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{key} {_shown(value)} must be {'an integer' if kind is int else 'a number'}", key)
    if not low <= value <= high:  # (before any float(): a 400-digit integer is no float)
        raise Invalid(f"{key} {_shown(value)} must be between {low:g} and {high:g}", key)
    if kind is int and not float(value).is_integer():
        raise Invalid(f"{key} {value!r} must be an integer", key)
    return kind(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _hyperparameters(shape: str, body: dict[str, Any]) -> dict[str, Any]:
    """The job's options, checked: OpenAI's (`n_epochs`, `batch_size`, `learning_rate_multiplier`,
    also under `method.supervised`) or Mistral's (`training_steps`, `learning_rate`, `epochs`,
    `weight_decay`, `warmup_fraction`, `seq_len`), and autan's LoRA ones (`lora_rank`, ...)."""
    raw = body.get("hyperparameters") or {}
    method = (body.get("method") or {}).get("supervised") if isinstance(body.get("method"), dict) else None
    if isinstance(method, dict) and isinstance(method.get("hyperparameters"), dict):
        raw = {**raw, **method["hyperparameters"]}
    if not isinstance(raw, dict):
        raise Invalid("hyperparameters must be an object", "hyperparameters")
    out: dict[str, Any] = {
        "lora_rank": _number(raw, "lora_rank", int, 1, 256, 8),
        "lora_alpha": _number(raw, "lora_alpha", float, 1e-3, 1e4, 16.0),
        "lora_dropout": _number(raw, "lora_dropout", float, 0, 0.9, 0.05),
    }
    if shape == "mistral":
        out |= {
            "training_steps": _number(raw, "training_steps", int, 1, 10**6, None),  # None: from the epochs
            "learning_rate": _number(raw, "learning_rate", float, 1e-8, 1, 1e-4),
            "epochs": _number(raw, "epochs", float, 0.01, 1000, 1.0),
            "weight_decay": _number(raw, "weight_decay", float, 0, 1, 0.1),
            "warmup_fraction": _number(raw, "warmup_fraction", float, 0, 0.99, 0.05),
            "seq_len": _number(raw, "seq_len", int, 2, MAX_SEQ_LEN, None),
            "batch_size": _number(raw, "batch_size", int, 1, 1024, 4),
        }
    else:
        out |= {
            "n_epochs": _number(raw, "n_epochs", int, 1, 50, DEFAULTS["n_epochs"]),
            "batch_size": _number(raw, "batch_size", int, 1, 256, DEFAULTS["batch_size"]),
            "learning_rate_multiplier": _number(raw, "learning_rate_multiplier", float, 1e-3, 100, 1.0),
        }
    return out


def _config(hyper: dict[str, Any], seed: int) -> TrainConfig:
    common = dict(rank=hyper["lora_rank"], alpha=hyper["lora_alpha"], dropout=hyper["lora_dropout"], seed=seed,
                  batch_size=hyper["batch_size"])  # fmt: skip
    seq_len = hyper.get("seq_len") or 2048  # (jobs made before the memory budget have none)
    common |= {"max_seq_len": seq_len, "pack_tokens": seq_len}  # so no pack holds more than the budget allows
    if "training_steps" in hyper:  # Mistral's
        config = TrainConfig(**common, learning_rate=hyper["learning_rate"], epochs=hyper["epochs"],
                             steps=hyper["training_steps"] or 0, weight_decay=hyper["weight_decay"],
                             warmup=hyper["warmup_fraction"])  # fmt: skip
    else:
        config = TrainConfig(**common, learning_rate=DEFAULTS["learning_rate"] * hyper["learning_rate_multiplier"],
                             epochs=hyper["n_epochs"])  # fmt: skip
    config.save_every = -1  # about ten checkpoints: a restart goes on from the newest
    return config


def _owned(db: Any, kind: Any, user_id: str | None, row_id: str, what: str) -> Any:
    """The row `row_id` of `kind` if `user_id`'s account owns it; another's is as if it were not there."""
    row = db.get(kind, row_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"no {what} '{row_id[:80]}'")
    return row
