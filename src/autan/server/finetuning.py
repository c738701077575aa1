"""`/v1/files` and `/v1/fine_tuning/jobs`, in OpenAI's and Mistral's shapes (a job made with
Mistral's request, `training_files`, is described in Mistral's shape). The work is
`autan.finetune.jobs`; this only maps HTTP onto it.

No `from __future__ import annotations` here: FastAPI reads the routes' `Caller` annotation,
made inside `router`, when the route is declared."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from autan.errors import Conflict, Invalid, Limited, NotFound
from autan.files import MAX_FILE_BYTES
from autan.finetune.jobs import Jobs
from autan.http.auth import Access
from autan.http.errors import APIError
from autan.store.accounts import Principal


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


def router(jobs: Jobs, served: dict[str, Any], access: Access) -> APIRouter:
    api = APIRouter(prefix="/v1")
    Caller = Annotated[Principal, Depends(access.v1)]

    def bases() -> dict[str, Any]:
        return {name: m for name, m in list(served.items()) if m.adapter is None}

    @api.post("/files")
    async def upload(
        file: Annotated[UploadFile, File()], who: Caller, purpose: Annotated[str, Form()] = "fine-tune"
    ) -> dict:
        data = await file.read(MAX_FILE_BYTES + 1)
        return await call(jobs.add_file, who.user_id, Path(file.filename or "upload.jsonl").name, purpose, data)

    @api.get("/files")
    async def list_files(who: Caller) -> dict:
        found = await call(jobs.list_files, who.user_id)
        return {"object": "list", "data": found, "total": len(found)}

    @api.get("/files/{file_id}")
    async def get_file(file_id: str, who: Caller) -> dict:
        return await call(jobs.get_file, who.user_id, file_id)

    @api.get("/files/{file_id}/content")
    async def file_content(file_id: str, who: Caller) -> Response:
        return Response(await call(jobs.file_content, who.user_id, file_id), media_type="application/octet-stream")

    @api.delete("/files/{file_id}")
    async def delete_file(file_id: str, who: Caller) -> dict:
        return await call(jobs.delete_file, who.user_id, file_id)

    @api.post("/fine_tuning/jobs")
    async def create(request: Request, who: Caller) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object")
        shape = "mistral" if "training_files" in body else "openai"
        return await call(jobs.create, who.user_id, shape, body, bases())

    @api.get("/fine_tuning/jobs")
    async def list_jobs(who: Caller) -> dict:
        found = await call(jobs.list, who.user_id)
        return {"object": "list", "data": found, "has_more": False, "total": len(found)}

    @api.get("/fine_tuning/jobs/{job_id}")
    async def get_job(job_id: str, who: Caller) -> dict:
        return await call(jobs.get, who.user_id, job_id)

    @api.post("/fine_tuning/jobs/{job_id}/cancel")
    async def cancel(job_id: str, who: Caller) -> dict:
        return await call(jobs.cancel, who.user_id, job_id)

    @api.get("/fine_tuning/jobs/{job_id}/events")
    async def events(job_id: str, who: Caller) -> dict:
        return {"object": "list", "data": await call(jobs.events, who.user_id, job_id), "has_more": False}

    return api
