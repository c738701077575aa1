"""Route handlers are module-level functions: the app's routes are those functions, and a handler
runs without a server, called with a `Server` of the test's making."""

import asyncio
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest
from fastapi.routing import iter_route_contexts

from autan.embeddings import PACKAGED
from autan.http.errors import APIError
from autan.server import app as api
from autan.server import messages
from autan.server.app import create_app
from autan.server.state import find
from autan.store.accounts import Principal
from autan.store.db import Store
from autan.web import routes as web


@pytest.fixture
def app(tmp_path):
    return create_app([], store=Store(f"sqlite:///{tmp_path / 'handlers.db'}"))


@pytest.mark.parametrize(
    "method, path, handler",
    [
        ("POST", "/v1/chat/completions", api.chat_completions),
        ("GET", "/v1/models", api.list_models),
        ("POST", "/tokenize", api.tokenize),
        ("POST", "/v1/messages", messages.messages),
        ("GET", "/api/me", web.me),
    ],
)
def test_a_route_is_its_modules_function(app, method, path, handler):
    found = [r.endpoint for r in iter_route_contexts(app.routes) if r.path == path and method in (r.methods or ())]
    assert found == [handler]


@dataclass
class Model:
    """What the model routes read of a served model: its card, and who may see it."""

    id: str
    owner: str | None = None

    def visible_to(self, who: Principal) -> bool:
        return self.owner is None or self.owner == who.user_id

    def card(self) -> dict:
        return {"id": self.id}


def test_a_handler_called_directly_lists_only_what_the_caller_may_see(app):
    served = {"base": Model("base"), "ft:a": Model("ft:a", owner="a"), "ft:b": Model("ft:b", owner="b")}
    s = replace(app.state.server, served=served)
    request = SimpleNamespace(state=SimpleNamespace(principal=Principal("a", "alice", False)))
    listed = asyncio.run(api.list_models(request, s))
    assert [card["id"] for card in listed["data"]] == ["base", "ft:a", PACKAGED]
    with pytest.raises(APIError) as refused:  # another account's fine-tune is not named
        find(s, "ft:b", request)
    assert refused.value.status == 404
    assert refused.value.message == "model 'ft:b' is not served here; available: base, ft:a"
