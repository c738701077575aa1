"""Errors in Mistral's envelope, which both the `mistralai` and `openai` clients read:

{"object": "error", "message": "...", "type": "invalid_request_error", "param": null, "code": null}
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from autan.text import clean

log = logging.getLogger("autan.server")
TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        message = clean(message)  # it may repeat a client's text: keep it encodable
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or TYPES.get(status, "invalid_request_error" if status < 500 else "internal_error")
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(envelope(self.message, self.type, self.param, self.code), self.status, headers=self.headers)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"object": "error", "message": message, "type": type, "param": param, "code": code}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """An envelope as bytes, for the middleware that answers before any route runs."""
    kind = TYPES.get(status, "invalid_request_error")
    return json.dumps(envelope(message, kind, code=code)).encode()


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" or isinstance(err.get("input"), bytes) for err in errors):
            err = errors[0]
            reason = err.get("ctx", {}).get("error", err.get("msg"))
            message = f"the request body is not valid JSON (send it with Content-Type: application/json): {reason}"
            return JSONResponse(envelope(message, "invalid_request_error", code="json_invalid"), 400)
        parts, param = [], None
        for err in errors[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body" and _is_name(p))
            param = param or where or None
            parts.append(f"{where or 'body'}: {err.get('msg')}{_shown(err)}")
        if len(errors) > 10:
            parts.append(f"and {len(errors) - 10} more")
        return JSONResponse(envelope("; ".join(parts), "invalid_request_error", param, "invalid_value"), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        allowed = _allowed(request) if e.status_code in (404, 405) else []
        if e.status_code in (404, 405) and request.method not in allowed:  # the app's files, at /, answer any path
            path = request.url.path[:200]
            if not allowed:
                message = f"no route {request.method} {path}: see /docs for the API's routes"
                return JSONResponse(envelope(clean(message), TYPES[404]), 404)
            message = f"{path} takes {', '.join(allowed)}, not {request.method}"
            return JSONResponse(envelope(clean(message), "invalid_request_error"), 405, {"Allow": ", ".join(allowed)})
        kind = TYPES.get(e.status_code, "invalid_request_error")
        return JSONResponse(envelope(clean(str(e.detail)), kind), e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(envelope(f"internal error: {type(e).__name__}", "internal_error"), 500)


def _allowed(request: Request) -> list[str]:
    """The methods the API's routes take at this path, as its OpenAPI schema lists them."""
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        if _pattern(template).fullmatch(path):
            return sorted(m.upper() for m in operations if m.upper() in HTTP_METHODS)
    return []


HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    """/v1/models/{model_id} as a regular expression: each {name} one path segment."""
    return re.compile("".join(
        "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template)
    ))  # fmt: skip


def _is_name(part: object) -> bool:
    """A field name or a list index; not pydantic's names for the shapes of a union."""
    return isinstance(part, int) or (isinstance(part, str) and part.replace("_", "a").isalnum())


def _shown(err: dict[str, Any]) -> str:
    """The value that was refused, if it is short enough to show."""
    if "input" not in err or isinstance(err["input"], dict | list):
        return ""
    shown = repr(err["input"])
    return f" (got {shown})" if len(shown) <= 80 else f" (got {shown[:60]}... {len(shown)} characters)"
