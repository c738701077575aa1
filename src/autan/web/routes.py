"""The chat app's own routes (`/api/...`): conversations, messages, export/import, accounts.

Generation is not here: the app calls `/v1/chat/completions` like any client and saves what it
receives through these routes as it streams, so a partial answer survives a crash.
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from autan.server.errors import APIError
from autan.store.db import Invalid, NotFound, Store

STATIC = Path(__file__).parent / "static"
COOKIE = "autan_session"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    safe_prompt: bool | None = None
    current_leaf_id: str | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent; null means "leave as is", except for max_tokens ("no limit")."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k == "max_tokens"}


class NewMessage(BaseModel):
    role: str
    content: str = ""
    parent_id: str | None = None
    status: str = "complete"
    model: str = ""
    stats: dict[str, Any] | None = None


class MessageUpdate(BaseModel):
    content: str | None = None
    status: str | None = None
    stats: dict[str, Any] | None = None


class Credentials(BaseModel):
    username: str
    password: str


def install(app: FastAPI, store: Store, *, multi_user: bool) -> None:
    def user(request: Request) -> str | None:
        if not multi_user:
            return None
        token = request.cookies.get(COOKIE)
        found = store.user_for(token) if token else None
        if found is None:
            raise APIError(401, "sign in first", type="authentication_error")
        return found[0]

    User = Annotated[str | None, Depends(user)]

    def guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except NotFound as e:
            raise APIError(404, str(e), type="not_found_error") from None
        except Invalid as e:
            raise APIError(400, str(e)) from None

    @app.get("/api/me")
    def me(request: Request) -> dict:
        token = request.cookies.get(COOKIE)
        found = store.user_for(token) if (multi_user and token) else None
        return {"multi_user": multi_user, "user": found[1] if found else None}

    @app.post("/api/register")
    def register(body: Credentials, response: Response) -> dict:
        if not multi_user:
            raise APIError(400, "accounts are off: start `autan serve --multi-user` to use them")
        guarded(store.create_user, body.username, body.password)
        return login(body, response)

    @app.post("/api/login")
    def login(body: Credentials, response: Response) -> dict:
        token = store.login(body.username, body.password)
        if token is None:
            raise APIError(401, "wrong username or password", type="authentication_error")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
        return {"user": body.username}

    @app.post("/api/logout")
    def logout(request: Request, response: Response) -> dict:
        token = request.cookies.get(COOKIE)
        if token:
            store.logout(token)
        response.delete_cookie(COOKIE)
        return {"user": None}

    @app.get("/api/conversations")
    def list_conversations(user_id: User, q: str = "") -> list[dict]:
        return store.list_conversations(user_id, q)

    @app.post("/api/conversations")
    def create(user_id: User, body: Settings | None = None) -> dict:
        changes = body.changes() if body else {}
        changes.pop("current_leaf_id", None)
        return guarded(store.create_conversation, user_id, **changes)

    @app.get("/api/conversations/{conversation_id}")
    def get(user_id: User, conversation_id: str) -> dict:
        return guarded(store.get_conversation, user_id, conversation_id)

    @app.patch("/api/conversations/{conversation_id}")
    def update(user_id: User, conversation_id: str, body: Settings) -> dict:
        return guarded(store.update_conversation, user_id, conversation_id, **body.changes())

    @app.delete("/api/conversations/{conversation_id}")
    def delete(user_id: User, conversation_id: str) -> dict:
        guarded(store.delete_conversation, user_id, conversation_id)
        return {"deleted": conversation_id}

    @app.post("/api/conversations/{conversation_id}/messages")
    def add_message(user_id: User, conversation_id: str, body: NewMessage) -> dict:
        return guarded(store.add_message, user_id, conversation_id, **body.model_dump())

    @app.patch("/api/messages/{message_id}")
    def update_message(user_id: User, message_id: str, body: MessageUpdate) -> dict:
        return guarded(store.update_message, user_id, message_id, **body.model_dump())

    @app.get("/api/conversations/{conversation_id}/export")
    def export(user_id: User, conversation_id: str, format: str = "json") -> Response:
        document = guarded(store.export, user_id, conversation_id)
        name = "".join(c if c.isascii() and c.isalnum() else "-" for c in document["title"])[:60] or "conversation"
        if format == "md":
            headers = {"Content-Disposition": f'attachment; filename="{name}.md"'}
            return PlainTextResponse(to_markdown(document), headers=headers, media_type="text/markdown")
        if format != "json":
            raise APIError(400, f"format '{format}' must be json or md", param="format")
        return JSONResponse(document, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})

    @app.post("/api/conversations/import")
    def import_(user_id: User, document: Annotated[dict, Body()]) -> dict:
        return guarded(store.import_, user_id, document)

    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="app")
    else:

        @app.get("/", response_class=HTMLResponse)
        def not_built() -> str:
            return "<p>The chat app is not built: run <code>make setup</code> (it needs npm).</p>"


def branch(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages on the path from the first message to the conversation's current leaf."""
    by_id = {m["id"]: m for m in document["messages"]}
    path, at = [], document.get("current_leaf_id")
    while at in by_id:
        path.append(by_id[at])
        at = by_id[at]["parent_id"]
    return path[::-1]


def to_markdown(document: dict[str, Any]) -> str:
    lines = [f"# {document['title']}", ""]
    settings = [f"model: {document['model'] or 'default'}", f"temperature: {document['temperature']}"]
    if document["system_prompt"]:
        settings.append(f"system prompt: {document['system_prompt']}")
    lines += [f"*{' · '.join(settings)}*", ""]
    for m in branch(document):
        lines += [f"## {m['role'].capitalize()}", "", m["content"], ""]
    return "\n".join(lines)
