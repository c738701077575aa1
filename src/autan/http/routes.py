"""The API's routes as its OpenAPI schema lists them: the template a path matches, and the
methods it takes. (Routers included into others keep only their own part of the path on the
route object; the schema has the whole template.)"""

from __future__ import annotations

import functools
import re
from typing import Any

HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def match(app: Any, path: str) -> tuple[str, list[str]] | None:
    """(template, methods) of the route whose template `path` matches; None when none does."""
    paths = app.openapi().get("paths", {})
    if path in paths:  # a fixed path before any template that would also match it
        return path, _methods(paths[path])
    for template, operations in paths.items():
        if _pattern(template).fullmatch(path):
            return template, _methods(operations)
    return None


def _methods(operations: dict) -> list[str]:
    return sorted(m.upper() for m in operations if m.upper() in HTTP_METHODS)


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    """/v1/models/{model_id} as a regular expression: each {name} one path segment."""
    return re.compile("".join(
        "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template)
    ))  # fmt: skip
