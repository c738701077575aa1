"""The chat app's own routes (`/api/...`): conversations, messages, export/import, accounts, and
the admin's users and keys.

Generation is not here: the app calls `/v1/chat/completions` like any client and saves what it
receives through these routes as it streams, so a partial answer survives a crash. Every data
route depends on `app_user` (a locked server's key, or a user's session), the admin routes on
`admin_user`; `autan.http.auth` says who passes.
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from autan.http.auth import COOKIE, Admin, User, access_of
from autan.http.errors import APIError
from autan.store.accounts import SESSION_DAYS, Principal
from autan.store.db import Invalid, Store
from autan.store.documents import CleanStr, ConversationDocument, MessageUpdate, NewMessage, Settings

STATIC = Path(__file__).parent / "static"


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[CleanStr, Field(max_length=64)]
    password: Annotated[str, Field(max_length=1024)]


class KeyLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: Annotated[str, Field(min_length=1, max_length=256)]


class NewUser(Credentials):
    admin: bool = False


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[CleanStr, Field(max_length=100)] = ""
    user_id: Annotated[str, Field(max_length=64)] | None = None


router = APIRouter()


async def store(request: Request) -> Store:
    """The app's store, from its `Server` (autan.server, which includes these routes, is not imported)."""
    return request.app.state.server.store


StoreDep = Annotated[Store, Depends(store)]


def install(app: FastAPI) -> None:
    """The routes, and the app's files at `/` (the store's refusals are API errors everywhere:
    `autan.http.errors`)."""
    app.include_router(router)
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="app")
    else:
        app.add_api_route("/", not_built, methods=["GET"], response_class=HTMLResponse)


def not_built() -> str:
    return "<p>The chat app is not built: run <code>make setup</code> (it needs npm).</p>"


def sign_in(store: Store, response: Response, principal: Principal, key: str | None = None) -> None:
    token = store.accounts.new_session(principal, key=key)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=SESSION_DAYS * 86400)


# accounts --------------------------------------------------------------------------------------


@router.get("/api/leaderboard")
def leaderboard_table(_: User) -> dict:
    """`autan eval`'s results on this machine: each model as it ran against each task."""
    from autan.eval import leaderboard

    return leaderboard.table(leaderboard.newest())


@router.get("/api/me")
def me(request: Request) -> dict:
    """What the app needs to know before anything else: may it go on, or must it ask for a key
    or a sign-in first."""
    access = access_of(request)
    found = access.principal(request)
    return {
        "multi_user": access.policy.multi_user,
        "locked": access.locked,
        "signed_in": found is not None or not access.locked,
        "user": found.username if found else None,
        "admin": bool(found and found.admin),
        "signup": access.signup_open,
    }


@router.post("/api/register")
def register(body: Credentials, request: Request, response: Response, store: StoreDep) -> dict:
    access = access_of(request)
    if not access.policy.multi_user:
        raise APIError(400, "accounts are off: start `autan serve --multi-user` to use them")
    keys = access.throttle.keys(request)
    access.throttle.check(keys)
    if not access.signup_open:  # no secret was tried: not a failure to count
        raise APIError(403, "sign-up is closed: ask an admin for an account (`autan user add`)")
    try:
        user = store.accounts.create_user(body.username, body.password)
    except Invalid:
        access.throttle.failed(keys)
        raise
    principal = Principal(user["id"], user["username"], user["admin"])
    sign_in(store, response, principal)
    return {"user": principal.username, "admin": principal.admin}


@router.post("/api/login")
def login(body: Credentials, request: Request, response: Response, store: StoreDep) -> dict:
    access = access_of(request)
    keys = access.throttle.keys(request, body.username)
    access.throttle.check(keys)
    principal = store.accounts.check_password(body.username, body.password)
    if principal is None:
        access.throttle.failed(keys)
        raise APIError(401, "wrong username or password")
    access.throttle.succeeded(keys)
    sign_in(store, response, principal)
    return {"user": principal.username, "admin": principal.admin}


@router.post("/api/session")
def key_login(body: KeyLogin, request: Request, response: Response, store: StoreDep) -> dict:
    """An API key typed once into the app becomes a session cookie (the key is not kept in the page)."""
    access = access_of(request)
    keys = access.throttle.keys(request)
    access.throttle.check(keys)
    principal = access.key_principal(body.api_key)
    if principal is None:
        access.throttle.failed(keys)
        raise APIError(401, "the API key is not valid")
    if access.policy.multi_user and principal.user_id is None and not principal.admin:
        raise APIError(403, "this key is not a user's: sign in with a name and password")
    sign_in(store, response, principal, key=body.api_key)  # the session lasts as long as the key does
    return {"user": principal.username, "admin": principal.admin}


@router.post("/api/logout")
def logout(request: Request, response: Response, store: StoreDep) -> dict:
    token = request.cookies.get(COOKIE)
    if token:
        store.accounts.end_session(token)
    response.delete_cookie(COOKIE)
    return {"user": None}


# admin -----------------------------------------------------------------------------------------


@router.get("/api/admin/users")
def list_users(admin: Admin, store: StoreDep) -> list[dict]:
    return store.accounts.users()


@router.post("/api/admin/users")
def add_user(admin: Admin, store: StoreDep, body: NewUser) -> dict:
    return store.accounts.create_user(body.username, body.password, admin=body.admin)


@router.delete("/api/admin/users/{user_id}")
def remove_user(admin: Admin, store: StoreDep, user_id: str) -> dict:
    store.accounts.remove_user(user_id)
    return {"deleted": user_id}


@router.get("/api/admin/keys")
def list_keys(admin: Admin, store: StoreDep) -> list[dict]:
    return store.accounts.api_keys()


@router.post("/api/admin/keys")
def add_key(admin: Admin, store: StoreDep, body: NewKey) -> dict:
    record, key = store.accounts.create_key(body.name, body.user_id if body.user_id is not None else admin.user_id)
    return {**record, "key": key}


@router.delete("/api/admin/keys/{key_id}")
def remove_key(admin: Admin, store: StoreDep, key_id: str) -> dict:
    store.accounts.remove_key(key_id)
    return {"deleted": key_id}


# conversations ---------------------------------------------------------------------------------


@router.get("/api/conversations")
def list_conversations(user: User, store: StoreDep, q: Annotated[str, Query(max_length=1000)] = "") -> list[dict]:
    return store.list_conversations(user.user_id, q)


@router.post("/api/conversations")
def create(user: User, store: StoreDep, body: Settings | None = None) -> dict:
    changes = body.changes() if body else {}
    changes.pop("current_leaf_id", None)
    return store.create_conversation(user.user_id, **changes)


@router.get("/api/conversations/{conversation_id}")
def get(user: User, store: StoreDep, conversation_id: str) -> dict:
    return store.get_conversation(user.user_id, conversation_id)


@router.patch("/api/conversations/{conversation_id}")
def update(user: User, store: StoreDep, conversation_id: str, body: Settings) -> dict:
    return store.update_conversation(user.user_id, conversation_id, **body.changes())


@router.delete("/api/conversations/{conversation_id}")
def delete(user: User, store: StoreDep, conversation_id: str) -> dict:
    store.delete_conversation(user.user_id, conversation_id)
    return {"deleted": conversation_id}


@router.post("/api/conversations/{conversation_id}/messages")
def add_message(user: User, store: StoreDep, conversation_id: str, body: NewMessage) -> dict:
    return store.add_message(user.user_id, conversation_id, **body.model_dump())


@router.patch("/api/messages/{message_id}")
def update_message(user: User, store: StoreDep, message_id: str, body: MessageUpdate) -> dict:
    return store.update_message(user.user_id, message_id, **body.model_dump())


@router.get("/api/conversations/{conversation_id}/export")
def export(user: User, store: StoreDep, conversation_id: str, format: str = "json") -> Response:
    document = store.export(user.user_id, conversation_id)
    name = "".join(c if c.isascii() and c.isalnum() else "-" for c in document["title"])[:60] or "conversation"
    if format == "md":
        headers = {"Content-Disposition": f'attachment; filename="{name}.md"'}
        return PlainTextResponse(to_markdown(document), headers=headers, media_type="text/markdown")
    if format != "json":
        raise APIError(400, f"format '{format[:20]}' must be json or md", param="format")
    return JSONResponse(document, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


@router.post("/api/conversations/import")
def import_(user: User, store: StoreDep, document: ConversationDocument) -> dict:
    return store.import_(user.user_id, document)


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
