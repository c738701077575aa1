"""Uploaded files, shared by fine-tuning jobs and batches: where they are kept, how many an account
may hold, and how the APIs describe one. (What a file's lines must be is each purpose's own:
`finetune.jobs.check_training_file`, `batches.check_batch_file`.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autan.registry import home
from autan.store.tables import File

MAX_FILE_BYTES = 512 * 2**20
MAX_FILES = 256  # files one account may hold


def files_dir() -> Path:
    return home() / "files"


def utc_now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def file_card(f: File) -> dict[str, Any]:
    """A file as OpenAI's and Mistral's APIs describe it (the fields of both)."""
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": stamp(f.created_at), "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "sample_type": "instruct", "num_lines": f.num_lines,
            "source": "upload"}  # fmt: skip
