"""`/v1/batches` (OpenAI's shape) and `/v1/batch/jobs` (Mistral's): the work is `autan.batches`;
this maps HTTP onto it, and gives its runner a way to send each request through this same app,
as the batch's owner."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from autan.batches import Batches
from autan.http.auth import Caller
from autan.http.errors import APIError
from autan.server.finetuning import call
from autan.server.state import Server, ServerDep


class OpenAIBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: Annotated[str, Field(max_length=64)]
    endpoint: Annotated[str, Field(max_length=64)]
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


class MistralBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_files: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=1)] | None = None
    requests: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=50_000)] | None = None  # inline
    endpoint: Annotated[str, Field(max_length=64)]
    model: Annotated[str, Field(max_length=256)] | None = None
    metadata: dict[str, str] | None = None
    timeout_hours: int = 24


router = APIRouter(prefix="/v1")


def _batches(s: Server) -> Batches:
    assert s.batches is not None, "the batch routes are included only with a store"
    return s.batches


@router.post("/batches")
async def create(body: OpenAIBatch, who: Caller, s: ServerDep) -> dict:
    if body.completion_window != "24h":
        raise APIError(400, f"completion_window {body.completion_window!r}: only '24h'", param="completion_window")
    return await call(_batches(s).create, who.user_id, "openai", body.input_file_id, body.endpoint, None, body.metadata)


@router.get("/batches")
async def list_openai(who: Caller, s: ServerDep) -> dict:
    found = await call(_batches(s).list, who.user_id, "openai")
    first, last = (found[0]["id"], found[-1]["id"]) if found else (None, None)
    return {"object": "list", "data": found, "first_id": first, "last_id": last, "has_more": False}


@router.get("/batches/{batch_id}")
async def get_openai(batch_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_batches(s).get, who.user_id, batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel_openai(batch_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_batches(s).cancel, who.user_id, batch_id)


@router.post("/batch/jobs")
async def create_mistral(body: MistralBatch, who: Caller, s: ServerDep) -> dict:
    if (body.input_files is None) == (body.requests is None):
        raise APIError(400, "give the requests as input_files or inline as requests, once", param="input_files")
    batches = _batches(s)
    file_id = body.input_files[0] if body.input_files else await call(batches.add_requests, who.user_id, body.requests)
    args = (who.user_id, "mistral", file_id, body.endpoint, body.model, body.metadata)
    return await call(batches.create, *args)


@router.get("/batch/jobs")
async def list_mistral(who: Caller, s: ServerDep) -> dict:
    found = await call(_batches(s).list, who.user_id, "mistral")
    return {"object": "list", "data": found, "total": len(found)}


@router.get("/batch/jobs/{batch_id}")
async def get_mistral(batch_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_batches(s).get, who.user_id, batch_id)


@router.post("/batch/jobs/{batch_id}/cancel")
async def cancel_mistral(batch_id: str, who: Caller, s: ServerDep) -> dict:
    return await call(_batches(s).cancel, who.user_id, batch_id)


def install_runner(app: FastAPI, s: Server) -> None:
    """The runner, from startup to shutdown: it sends each request through the app itself (its
    checks, limits and rails), as the batch's owner, while no interactive request waits."""
    batches, access, served = _batches(s), s.access, s.served
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer, not a crash
    client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=None)

    async def send(url: str, body: dict[str, Any], owner: str | None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {access.internal_key(owner)}"}
        answer = await client.post(url, json=body, headers=headers)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"message": answer.text[:1000]}

    def busy() -> bool:
        return any(m.engine.engine.stats().waiting > 0 for m in list(served.values()) if m.adapter is None)

    tasks: list[asyncio.Task] = []
    app.router.on_startup.append(lambda: tasks.append(asyncio.get_running_loop().create_task(batches.run(send, busy))))

    async def stop() -> None:
        batches.closing = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()

    app.router.on_shutdown.append(stop)
