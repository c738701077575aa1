"""Errors in Mistral's envelope, which both the `mistralai` and `openai` clients read:

{"object": "error", "message": "...", "type": "invalid_request_error", "param": null, "code": null}
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from autan.errors import Conflict, Invalid, Limited, NotFound
from autan.http import routes
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


# Anthropic's Messages API answers its errors in its own envelope, which its SDK reads
ANTHROPIC_PATHS = ("/v1/messages",)
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
                   429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}  # fmt: skip


def shaped(request: Request, body: dict, status: int, headers: dict | None = None) -> JSONResponse:
    """`body` (our envelope) as the API of the request's path words its errors."""
    if request.url.path.startswith(ANTHROPIC_PATHS):
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": body["message"]}}
        status = 400 if status == 422 else status
    return JSONResponse(body, status, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, api_error)
    for refusal in REFUSALS:  # what the layers below refuse (autan.errors), as API errors
        app.add_exception_handler(refusal, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(Exception, unexpected)


REFUSALS = {NotFound: 404, Invalid: 400, Conflict: 409, Limited: 429}


async def refused(request: Request, e: Exception) -> JSONResponse:
    """A refusal from below the HTTP layer (a store, the rails, a job queue): its status, its message
    and, for a bad field, the field's name."""
    status = next(status for kind, status in REFUSALS.items() if isinstance(e, kind))
    return await api_error(request, APIError(status, str(e), param=getattr(e, "param", None)))


async def api_error(request: Request, e: APIError) -> JSONResponse:
    return shaped(request, envelope(e.message, e.type, e.param, e.code), e.status, e.headers)


async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
    errors = e.errors()
    if any(err.get("type") == "json_invalid" or isinstance(err.get("input"), bytes) for err in errors):
        err = errors[0]
        reason = err.get("ctx", {}).get("error", err.get("msg"))
        message = f"the request body is not valid JSON (send it with Content-Type: application/json): {reason}"
        return shaped(request, envelope(message, "invalid_request_error", code="json_invalid"), 400)
    parts, param = [], None
    for err in errors[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body" and _is_name(p))
        param = param or where or None
        parts.append(f"{where or 'body'}: {err.get('msg')}{_shown(err)}")
    if len(errors) > 10:
        parts.append(f"and {len(errors) - 10} more")
    return shaped(request, envelope("; ".join(parts), "invalid_request_error", param, "invalid_value"), 422)


async def http_error(request: Request, e: HTTPException) -> JSONResponse:
    allowed = _allowed(request) if e.status_code in (404, 405) else []
    if e.status_code in (404, 405) and request.method not in allowed:  # the app's files, at /, answer any path
        path = request.url.path[:200]
        if not allowed:
            message = f"no route {request.method} {path}: see /docs for the API's routes"
            return shaped(request, envelope(clean(message), TYPES[404]), 404)
        message = f"{path} takes {', '.join(allowed)}, not {request.method}"
        allow = {"Allow": ", ".join(allowed)}
        return shaped(request, envelope(clean(message), "invalid_request_error"), 405, allow)
    kind = TYPES.get(e.status_code, "invalid_request_error")
    return shaped(request, envelope(clean(str(e.detail)), kind), e.status_code, getattr(e, "headers", None))


async def too_deep(request: Request, e: RecursionError) -> JSONResponse:
    message = "the request is nested too deeply to read (JSON objects and arrays within each other)"
    return shaped(request, envelope(message, "invalid_request_error", code="too_deep"), 400)


async def unexpected(request: Request, e: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return shaped(request, envelope(f"internal error: {type(e).__name__}", "internal_error"), 500)


def _allowed(request: Request) -> list[str]:
    """The methods the API's routes take at this path, as its OpenAPI schema lists them."""
    found = routes.match(request.app, request.url.path)
    return found[1] if found is not None else []


def _is_name(part: object) -> bool:
    """A field name or a list index; not pydantic's names for the shapes of a union."""
    return isinstance(part, int) or (isinstance(part, str) and part.replace("_", "a").isalnum())


def _shown(err: dict[str, Any]) -> str:
    """The value that was refused, if it is short enough to show."""
    if "input" not in err or isinstance(err["input"], dict | list):
        return ""
    shown = repr(err["input"])
    return f" (got {shown})" if len(shown) <= 80 else f" (got {shown[:60]}... {len(shown)} characters)"
