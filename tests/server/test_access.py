"""Who may call what, tried as an attacker would: every route family behind one key or sign-in,
closed sign-up, throttled guesses, metrics that neither leak nor grow, and a server that
answers only to its own names, in its own frames, with its own scripts."""

import re

import pytest
from fastapi.testclient import TestClient

from autan.http import auth
from autan.http.auth import Policy
from autan.server.app import Limits, create_app
from autan.store.db import Store

KEY = "sk-operator"
BEARER = {"Authorization": f"Bearer {KEY}"}
ALICE = {"username": "alice", "password": "correct horse"}


def client(app, host="127.0.0.1"):
    return TestClient(app, base_url=f"http://{host}")


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'access.db'}")


def test_a_key_guards_the_chat_apps_data_too(store):
    """Finding 1: with --api-key alone, /api listed, read and deleted every conversation."""
    app = create_app([], policy=Policy(api_keys=[KEY]), store=store)
    owner, stranger = client(app), client(app)
    made = owner.post("/api/conversations", json={"title": "board minutes"}, headers=BEARER)
    assert made.status_code == 200
    cid = made.json()["id"]
    for method, path in [
        ("GET", "/api/conversations"),
        ("GET", f"/api/conversations/{cid}"),
        ("PATCH", f"/api/conversations/{cid}"),
        ("DELETE", f"/api/conversations/{cid}"),
        ("GET", f"/api/conversations/{cid}/export"),
        ("POST", "/api/conversations/import"),
        ("POST", f"/api/conversations/{cid}/messages"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
    ]:
        answer = stranger.request(method, path, json={})
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["object"] == "error"
    assert stranger.get("/api/me").json() == {
        "multi_user": False,
        "locked": True,
        "signed_in": False,
        "user": None,
        "admin": False,
        "signup": False,
    }
    # the key typed once into the app becomes a session cookie
    assert stranger.post("/api/session", json={"api_key": "wrong"}).status_code == 401
    assert stranger.post("/api/session", json={"api_key": KEY}).status_code == 200
    assert [c["title"] for c in stranger.get("/api/conversations").json()] == ["board minutes"]
    assert stranger.get("/v1/models").status_code == 200
    stranger.post("/api/logout")
    assert stranger.get("/api/conversations").status_code == 401
    assert owner.get("/health").status_code == 200  # health needs nothing


def test_sign_up_is_closed_unless_the_operator_opens_it(store):
    """Finding 2: with --multi-user --api-key, anyone could register and then use /v1."""
    app = create_app([], policy=Policy(api_keys=[KEY], multi_user=True), store=store)
    visitor = client(app)
    refused = visitor.post("/api/register", json=ALICE)
    assert refused.status_code == 403 and "sign-up is closed" in refused.json()["message"]
    assert visitor.get("/v1/models").status_code == 401
    # the operator's key may administer: it makes the first account, which is the admin
    admin = client(app)
    made = admin.post("/api/admin/users", json=ALICE, headers=BEARER)
    assert made.status_code == 200 and made.json()["admin"]
    assert admin.post("/api/login", json=ALICE).json() == {"user": "alice", "admin": True}
    bob = admin.post("/api/admin/users", json={"username": "bob", "password": "battery staple"}).json()
    key = admin.post("/api/admin/keys", json={"name": "bob's scripts", "user_id": bob["id"]}).json()
    assert key["key"].startswith("sk-autan-")
    assert visitor.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
    bobs = client(app)
    bobs.post("/api/login", json={"username": "bob", "password": "battery staple"})
    assert bobs.get("/api/admin/users").status_code == 403  # bob is no admin
    assert admin.delete(f"/api/admin/keys/{key['id']}").status_code == 200
    assert visitor.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401

    opened = create_app([], policy=Policy(api_keys=[KEY], multi_user=True, allow_signup=True), store=store)
    newcomer = client(opened)
    assert newcomer.post("/api/register", json={"username": "carol", "password": "long enough"}).status_code == 200
    assert newcomer.get("/v1/models").status_code == 200  # a user signed in may use the API


def test_without_keys_the_first_account_is_the_admin_and_sign_up_then_closes(store):
    app = create_app([], policy=Policy(multi_user=True), store=store)
    first, second = client(app), client(app)
    assert first.get("/api/me").json()["signup"]
    assert first.post("/api/register", json=ALICE).json() == {"user": "alice", "admin": True}
    assert second.post("/api/register", json={"username": "mallory", "password": "long enough"}).status_code == 403
    assert second.get("/api/conversations").status_code == 401


def test_guessing_passwords_is_throttled_and_names_do_not_leak(store, monkeypatch):
    """Finding 3: 30 wrong passwords in 3 s, then the right one worked."""
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    app = create_app([], policy=Policy(multi_user=True), store=store)
    store.accounts.create_user("Alice", ALICE["password"])
    guesser = client(app)
    answers = [guesser.post("/api/login", json={**ALICE, "password": f"guess {i}"}).status_code for i in range(30)]
    assert answers[:5] == [401] * 5 and 429 in answers[5:]
    blocked = guesser.post("/api/login", json=ALICE)  # the right password, while blocked
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    clock[0] += 3600  # an hour later the window has passed
    signed = guesser.post("/api/login", json={"username": "ALICE", "password": ALICE["password"]})
    assert signed.status_code == 200 and signed.json()["user"] == "Alice"  # one name, whatever its case
    unknown = client(app).post("/api/login", json={"username": "nobody", "password": "whatever1"})
    wrong = client(app).post("/api/login", json={"username": "alice", "password": "whatever1"})
    assert unknown.status_code == wrong.status_code == 401 and unknown.json() == wrong.json()


def test_keys_are_compared_in_constant_time_each(monkeypatch):
    """Every configured key is compared, with hmac.compare_digest, whichever one matches."""
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    access = auth.Access(Policy(api_keys=["first-key", "second-key", "third-key"]))
    assert access.key_principal("first-key") == auth.OPERATOR
    assert len(compared) == 3
    assert access.key_principal("first-keyX") is None


def test_metrics_are_labelled_by_route_and_can_be_protected(store):
    """Finding 4: 300 random URLs made 300 series, with conversation ids and a NUL in them."""
    app = create_app([], policy=Policy(api_keys=[KEY]), store=store)
    c = client(app)
    assert c.get("/metrics").status_code == 401
    before = c.get("/metrics", headers=BEARER).text
    for i in range(300):
        c.get(f"/api/conversations/{i:032x}", headers=BEARER)
        c.get(f"/no/such/path/{i}%00")
    text = c.get("/metrics", headers=BEARER).text
    series = {line.split(" ")[0] for line in text.splitlines() if line.startswith("autan_requests_total")}
    endpoints = {re.search(r'endpoint="([^"]*)"', s)[1] for s in series}
    assert endpoints <= {"/api/conversations/{conversation_id}", "unmatched", "/metrics", "/"}, endpoints
    assert len(series) < 10 and "\\x00" not in text and "%00" not in text
    assert len(before.splitlines()) <= len(text.splitlines()) < len(before.splitlines()) + 20
    public = create_app([], policy=Policy(api_keys=[KEY], public_metrics=True), store=store)
    assert client(public).get("/metrics").status_code == 200


def test_only_the_servers_own_names_and_origin_pass(store):
    """Finding 5: a page whose domain resolves to 127.0.0.1 (DNS rebinding) reached the server."""
    app = create_app([], store=store, limits=Limits(allowed_hosts=["chat.example.org"]))
    rebound = client(app, host="attacker.example.com").get("/api/conversations")
    assert rebound.status_code == 421 and "--allowed-host" in rebound.json()["message"]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "chat.example.org", "192.168.1.20"):
        assert client(app, host=host).get("/api/conversations").status_code == 200, host
    assert client(create_app([], store=store, limits=Limits(allowed_hosts=["*"])), "any.name").get("/health")
    # a state-changing request carrying the session cookie must come from the app's own origin
    session = client(create_app([], policy=Policy(api_keys=[KEY]), store=store))
    session.post("/api/session", json={"api_key": KEY})
    foreign = session.post("/api/conversations", json={}, headers={"Origin": "http://localhost:3000"})
    assert foreign.status_code == 403
    own = session.post("/api/conversations", json={}, headers={"Origin": "http://127.0.0.1"})
    assert own.status_code == 200


def test_every_answer_carries_a_content_security_policy_and_docs_need_no_cdn(store):
    app = create_app([], store=store)
    c = client(app)
    for path in ("/", "/health", "/api/conversations", "/no-such-page", "/docs"):
        headers = c.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
    docs = c.get("/docs").text
    assert "swagger-ui" in docs and "cdn" not in docs.lower() and "http" not in re.sub(r"<!--.*?-->", "", docs)
    for asset in re.findall(r'(?:src|href)="([^"]+)"', docs):
        assert c.get(asset).status_code == 200, asset  # every file it needs is served here


def test_a_session_opened_with_a_key_ends_when_the_key_does(store):
    """Review finding: a session made by typing a key into the app outlived the key's revocation."""
    app = create_app([], policy=Policy(api_keys=[KEY]), store=store)
    admin = client(app)
    admin.post("/api/session", json={"api_key": KEY})
    assert admin.get("/api/me").json()["admin"]  # the operator's key may administer, in the app too
    made = store.accounts.create_key("laptop")[1]
    browser = client(app)
    assert browser.post("/api/session", json={"api_key": made}).status_code == 200
    assert browser.get("/api/conversations").status_code == 200
    store.accounts.remove_key(store.accounts.api_keys()[0]["id"])
    assert browser.get("/api/conversations").status_code == 401
    rotated = client(create_app([], policy=Policy(api_keys=["sk-new"]), store=store))
    rotated.cookies = admin.cookies  # the same browser, after the operator changed the key
    assert rotated.get("/api/conversations").status_code == 401
    assert rotated.get("/v1/models").status_code == 401


def test_the_name_throttle_sees_through_spacing(store, monkeypatch):
    monkeypatch.setattr(auth.time, "monotonic", lambda: 1000.0)
    app = create_app([], policy=Policy(multi_user=True), store=store)
    store.accounts.create_user("carol", "carol's password")
    for i in range(7):  # each from its own address, so only the name's count can stop them
        c = client(app)
        c.post("/api/login", json={"username": "carol", "password": f"guess {i}"}, headers={"x-real-ip": str(i)})
    for spelled in (" carol", "carol\t", "CAROL "):
        answer = client(app).post("/api/login", json={"username": spelled, "password": "carol's password"})
        assert answer.status_code == 429, spelled


def test_flooding_the_throttle_does_not_lift_a_block(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    throttle = auth.Throttle(free=2, most=1000)
    for _ in range(6):
        throttle.failed(["user:dave"])
    for i in range(5000):
        throttle.failed([f"ip:10.0.{i // 256}.{i % 256}"])
    with pytest.raises(auth.APIError) as refused:
        throttle.check(["user:dave"])
    assert refused.value.status == 429
    assert len(throttle._failures) <= 1000


def test_wrong_keys_are_throttled_by_address(store, monkeypatch):
    monkeypatch.setattr(auth.time, "monotonic", lambda: 5000.0)
    app = create_app([], policy=Policy(api_keys=[KEY]), store=store)
    guesser = client(app)
    codes = [guesser.get("/v1/models", headers={"Authorization": f"Bearer sk-{i}"}).status_code for i in range(25)]
    assert codes[:20] == [401] * 20 and codes[-1] == 429
    assert guesser.get("/v1/models", headers=BEARER).status_code == 429  # the right key waits too


@pytest.mark.parametrize("with_store", [False, True])
def test_an_open_server_ignores_dummy_keys(store, monkeypatch, with_store):
    """OpenAI-style clients must send a key ("EMPTY", "x"): on a server without keys it is not a
    failed sign-in, however often it comes."""
    monkeypatch.setattr(auth.time, "monotonic", lambda: 5000.0)
    app = create_app([], store=store if with_store else None)
    caller = client(app)
    codes = [caller.get("/v1/models", headers={"Authorization": f"Bearer {k}"}).status_code
             for k in ["EMPTY", "x", "sk-no-key-required"] * 10]  # fmt: skip
    assert codes == [200] * 30
    assert app.state.access.key_throttle._failures == {}


def test_odd_input_in_names_and_origins(store):
    app = create_app([], store=store)
    c = client(app)
    odd = c.post(
        "/v1/chat/completions",
        content=b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"content-type": "application/json"},
    )
    assert odd.status_code == 404 and "\ufffd" in odd.json()["message"]
    foreign = c.post("/api/conversations", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403  # an open server too: no page may create conversations on it
    assert c.get("/health", headers={"host": "[::1]evil.com"}).status_code == 421
    assert client(app).get("/").status_code == 200
    text = client(app).get("/metrics").text
    assert 'endpoint="/",status="200"' in text  # the app's files, counted as "/"


def test_another_users_message_is_as_good_as_absent(store):
    app = create_app([], policy=Policy(multi_user=True), store=store)
    alice, bob = client(app), client(app)
    alice.post("/api/register", json=ALICE)
    store.accounts.create_user("bob", "battery staple")
    bob.post("/api/login", json={"username": "bob", "password": "battery staple"})
    c = alice.post("/api/conversations", json={}).json()
    m = alice.post(f"/api/conversations/{c['id']}/messages", json={"role": "user", "content": "mine"}).json()
    answer = bob.patch(f"/api/messages/{m['id']}", json={"content": "yours"})
    assert answer.status_code == 404 and answer.json()["message"] == f"message {m['id']} does not exist"
    assert c["id"] not in answer.text


@pytest.mark.parametrize("with_store", [False, True])
def test_unknown_routes_are_404_and_wrong_methods_405_in_the_envelope(store, with_store):
    """The chat app's files are mounted at /: a POST to a path no route has was their 405."""
    c = client(create_app([], store=store if with_store else None))
    for method, path in [("POST", "/v1/nothing"), ("GET", "/v1/nothing/deeper"), ("POST", "/v2/chat/completions")]:
        answer = c.request(method, path, json={})
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["type"] == "not_found_error" and f"no route {method} {path}" in answer.json()["message"]
    wrong = c.get("/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["message"] == "/v1/chat/completions takes POST, not GET"
    assert c.post("/v1/models/some-model").status_code == 405  # GET /v1/models/{model_id} exists
    if with_store:
        assert c.get("/api/conversations/nope").status_code == 404  # a route's own 404 stays
