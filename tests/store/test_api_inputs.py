"""The chat app's /api routes under bad input, on SQLite and on PostgreSQL: crafted bodies that
gave 500s or saved what could never load again, then hypothesis bodies (NUL, lone surrogates,
deep nesting, huge numbers). No answer is a 5xx, and every conversation still opens."""

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autan.server.app import create_app


@pytest.fixture
def api(store):
    return TestClient(create_app([], store=store), base_url="http://127.0.0.1")


def send(api, method, path, body):
    """JSON written by hand, so lone surrogates travel as \\ud800 escapes (as a browser may send them)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.request(method, path, content=content, headers={"content-type": "application/json"})


def everything_still_opens(api, ids=None):
    """Every conversation (or those of `ids`) opens and exports."""
    listed = api.get("/api/conversations")
    assert listed.status_code == 200
    for cid in ids if ids is not None else [c["id"] for c in listed.json()]:
        assert api.get(f"/api/conversations/{cid}").status_code == 200, cid
        assert api.get(f"/api/conversations/{cid}/export").status_code == 200, cid


def nested(depth):
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_crafted_bodies_get_clear_refusals(api):
    c = api.post("/api/conversations", json={"title": "target"}).json()
    q = api.post(f"/api/conversations/{c['id']}/messages", json={"role": "user", "content": "hi"}).json()
    a = send(api, "POST", f"/api/conversations/{c['id']}/messages", {"role": "assistant", "parent_id": q["id"]}).json()
    export = {**api.get(f"/api/conversations/{c['id']}/export").json(), "current_leaf_id": None}
    message = {"id": "m1", "parent_id": None, "role": "user", "content": "x"}
    conv, msgs, upd = (
        f"/api/conversations/{c['id']}",
        f"/api/conversations/{c['id']}/messages",
        f"/api/messages/{a['id']}",
    )
    cases = [
        ("POST", "/api/conversations/import", {**export, "temperature": "abc"}, 422),
        ("POST", "/api/conversations/import", {**export, "messages": [1]}, 422),
        ("POST", "/api/conversations/import", {**export, "max_tokens": 2**70}, 422),
        ("POST", "/api/conversations/import", {**export, "messages": [message, {**message, "parent_id": "m1"}]}, 422),
        ("POST", "/api/conversations/import", {**export, "messages": [{**message, "stats": nested(300)}]}, 200),
        ("POST", "/api/conversations/import", {**export, "title": 5}, 422),
        ("POST", "/api/conversations/import", {**export, "format": "other"}, 422),
        ("POST", "/api/conversations/import", [], 422),
        ("POST", "/api/conversations/import", "text", 422),
        ("POST", "/api/conversations/import", b"{not json", 400),
        ("POST", "/api/conversations/import", b"[" * 100_000, 400),
        ("POST", "/api/conversations", {"temperature": 1e308}, 422),
        ("POST", "/api/conversations", {"max_tokens": 2**70}, 422),
        ("POST", "/api/conversations", {"title": "x" * 201}, 422),
        ("POST", "/api/conversations", {"nope": 1}, 422),
        ("POST", "/api/conversations", {"model": "\x00\ud800"}, 200),
        ("PATCH", conv, {"title": "   "}, 400),
        ("PATCH", conv, {"title": "t\x00itle \udc80"}, 200),
        ("PATCH", conv, {"current_leaf_id": "x" * 100}, 422),
        ("PATCH", conv, {"current_leaf_id": "nowhere"}, 400),
        ("PATCH", conv, {"top_p": 0}, 422),
        ("PATCH", conv, b"NaN", 422),
        ("POST", msgs, {"role": "user", "content": "a\x00b\ud800", "parent_id": q["id"]}, 200),
        ("POST", msgs, {"role": "user", "stats": nested(300)}, 200),
        ("POST", msgs, {"role": "user", "stats": {"tokens": -1}}, 422),
        ("POST", msgs, {"role": "user", "stats": {"tokens_per_second": "fast"}}, 422),
        ("POST", msgs, {"role": "robot"}, 422),
        ("POST", msgs, {"role": "user", "parent_id": "someone-elses"}, 400),
        ("POST", msgs, {"role": "user", "status": "done"}, 422),
        ("POST", msgs, {"role": "user", "content": ["not", "text"]}, 422),
        ("PATCH", upd, {"stats": nested(300)}, 200),
        ("PATCH", upd, {"content": "x" * 10, "status": "complete"}, 200),
        ("PATCH", upd, {"content": "late partial save"}, 409),
        ("PATCH", "/api/messages/%00", {"content": "x"}, 404),
        ("GET", "/api/conversations?q=%00%ED%A0%80", None, 200),
        ("GET", "/api/conversations/%00", None, 404),
        ("GET", f"{conv}/export?format=pdf", None, 400),
        ("DELETE", "/api/conversations/" + "9" * 500, None, 404),
        ("POST", "/api/login", {"username": "x" * 10_000, "password": "p"}, 422),
        ("POST", "/api/register", {"username": "alice", "password": "long enough"}, 400),
    ]
    for method, path, body, status in cases:
        answer = api.request(method, path) if body is None else send(api, method, path, body)
        assert answer.status_code == status, (method, path, str(body)[:80], answer.text[:300])
        if status >= 400:
            assert answer.json()["object"] == "error" and answer.json()["message"]
    everything_still_opens(api)
    saved = api.get(conv).json()
    assert saved["title"] == "t\ufffditle \ufffd"
    assert "a\ufffdb\ufffd" in [m["content"] for m in saved["messages"]]
    final = next(m for m in saved["messages"] if m["id"] == a["id"])
    assert final["content"] == "x" * 10 and final["status"] == "complete"  # the late partial save did not land


def texts():
    return st.text(st.characters(codec=None, categories=None), max_size=30) | st.sampled_from(
        ["\x00", "\ud800", "a\udfffb", "", " ", "x" * 300]
    )


def values():
    scalars = st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False) | texts()
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(), inner, max_size=3)
    )


FIELDS = {
    "settings": ["title", "model", "system_prompt", "temperature", "top_p", "max_tokens", "safe_prompt"],
    "message": ["role", "content", "parent_id", "status", "model", "stats"],
    "update": ["content", "status", "stats"],
    "import": ["format", "title", "temperature", "max_tokens", "messages", "current_leaf_id"],
}


def bodies(kind):
    keys = st.sampled_from(FIELDS[kind]) | texts()
    good = {"message": {"role": "user"}, "import": {"format": "autan-conversation", "messages": []}}.get(kind, {})
    return st.dictionaries(keys, values(), max_size=4).map(lambda d: {**good, **d}) | values()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    settings_body=bodies("settings"),
    message_body=bodies("message"),
    update_body=bodies("update"),
    import_body=bodies("import"),
    query=texts(),
)
def test_no_body_gets_a_server_error(api, settings_body, message_body, update_body, import_body, query):
    c = send(api, "POST", "/api/conversations", settings_body)
    assert c.status_code < 500, c.text
    target = c.json()["id"] if c.status_code == 200 else api.post("/api/conversations", json={}).json()["id"]
    touched = [target]
    for method, path, body in [
        ("PATCH", f"/api/conversations/{target}", settings_body),
        ("POST", f"/api/conversations/{target}/messages", message_body),
        ("POST", "/api/conversations/import", import_body),
    ]:
        answer = send(api, method, path, body)
        assert answer.status_code < 500, (method, answer.text)
        if path.endswith("/import") and answer.status_code == 200:
            touched.append(answer.json()["id"])
        if path.endswith("/messages") and answer.status_code == 200:
            patched = send(api, "PATCH", f"/api/messages/{answer.json()['id']}", update_body)
            assert patched.status_code < 500, patched.text
    assert api.get("/api/conversations?q=" + quote(query.encode("utf-8", "surrogatepass"))).status_code == 200
    everything_still_opens(api, touched)
