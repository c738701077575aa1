"""`/v1/files` and `/v1/fine_tuning/jobs`, in OpenAI's and Mistral's shapes (a job made with
Mistral's request, `training_files`, is described in Mistral's shape). The work is
`autan.finetune.jobs`; this only maps HTTP onto it, and runs the jobs' worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from autan.errors import Conflict, Invalid, Limited, NotFound
from autan.files import MAX_FILE_BYTES
from autan.finetune.jobs import Jobs
from autan.http.auth import Caller
from autan.http.errors import APIError
from autan.server.state import Server, ServerDep


async def call(work: Any, *args: Any) -> Any:
    """`work(*args)` off the event loop, its refusals in the API's terms (files, jobs, batches)."""
    try:
        return await asyncio.to_thread(work, *args)
    except NotFound as e:
        raise APIError(404, str(e)) from None
    except Invalid as e:
        raise APIError(400, str(e), param=e.param) from None
    except Conflict as e:
        raise APIError(409, str(e)) from None
    except Limited as e:
        raise APIError(429, str(e)) from None


router = APIRouter(prefix="/v1")


def _jobs(s: Server) -> Jobs:
    assert s.jobs is not None, "the files and fine-tuning routes are included only with a store"
    return s.jobs


def _bases(s: Server) -> dict[str, Any]:
    return {name: m for name, m in list(s.served.items()) if m.adapter is None}


@router.post("/files")
async def upload(
    file: Annotated[UploadFile, File()], who: Caller, s: ServerDep, purpose: Annotated[str, Form()] = "fine-tune"
) -> dict:
    data = await file.read(MAX_FILE_BYTES + 1)
    return await call(_jobs(s).add_file, who.user_id, Path(file.filename or "upload.jsonl").name, purpose, data)


@router.get("/files")
async def list_files(who: Caller, s: ServerDep) -> dict:
    found = await call(_jobs(s).list_files, who.user_id)
    return {"object": "list", "data": found, "total": len(found)}


@router.get("/files/{file_id}")
async def get_file(file_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_jobs(s).get_file, who.user_id, file_id)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, who: Caller, s: ServerDep) -> Response:
    return Response(await call(_jobs(s).file_content, who.user_id, file_id), media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_jobs(s).delete_file, who.user_id, file_id)


@router.post("/fine_tuning/jobs")
async def create(request: Request, who: Caller, s: ServerDep) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    shape = "mistral" if "training_files" in body else "openai"
    return await call(_jobs(s).create, who.user_id, shape, body, _bases(s))


@router.get("/fine_tuning/jobs")
async def list_jobs(who: Caller, s: ServerDep) -> dict:
    found = await call(_jobs(s).list, who.user_id)
    return {"object": "list", "data": found, "has_more": False, "total": len(found)}


@router.get("/fine_tuning/jobs/{job_id}")
async def get_job(job_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_jobs(s).get, who.user_id, job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
async def cancel(job_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_jobs(s).cancel, who.user_id, job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
async def events(job_id: str, who: Caller, s: ServerDep) -> dict:
    return {"object": "list", "data": await call(_jobs(s).events, who.user_id, job_id), "has_more": False}


def install_worker(app: FastAPI, s: Server) -> None:
    """The jobs' worker, from startup to shutdown; each adapter a job makes is served beside its
    base model."""
    jobs, served = _jobs(s), s.served

    def ready(base: str, name: str, path: Any, owner: str | None) -> None:
        model = served[base].with_adapter(name, path, owner)
        served[model.id] = model

    app.router.on_startup.append(lambda: jobs.start(served, ready))
    app.router.on_shutdown.append(jobs.close)
