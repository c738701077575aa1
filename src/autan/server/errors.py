"""Errors in Mistral's envelope, which both the `mistralai` and `openai` clients read:

{"object": "error", "message": "...", "type": "invalid_request_error", "param": null, "code": null}
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("autan.server")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"object": "error", "message": message, "type": type, "param": param, "code": code}


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(envelope(e.message, e.type, e.param, e.code), e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" or isinstance(err.get("input"), bytes) for err in errors):
            err = errors[0]
            reason = err.get("ctx", {}).get("error", err.get("msg"))
            message = f"the request body is not valid JSON (send it with Content-Type: application/json): {reason}"
            return JSONResponse(envelope(message, "invalid_request_error", code="json_invalid"), 400)
        parts, param = [], None
        for err in errors:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            param = param or where or None
            value = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict | list) else ""
            parts.append(f"{where or 'body'}: {err.get('msg')}{value}")
        return JSONResponse(envelope("; ".join(parts), "invalid_request_error", param, "invalid_value"), 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(envelope(str(e.detail), kind), e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(envelope(f"internal error: {type(e).__name__}", "internal_error"), 500)
