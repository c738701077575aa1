"""The second probe's findings, each as a test that failed before its fix."""

import dataclasses
import re

import pytest
from fastapi.testclient import TestClient

from autan.http import auth
from autan.http.auth import Policy
from autan.server.app import create_app
from autan.server.models import load_served
from autan.store.db import Store


def client(app):
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'h.db'}")


def test_wrong_keys_pace_a_guesser_without_locking_out_the_right_key(store, monkeypatch):
    clock = [5000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    app = create_app([], policy=Policy(api_keys=["sk-right"]), store=store)
    c = client(app)
    codes = [c.get("/v1/models", headers={"Authorization": f"Bearer sk-{i}"}).status_code for i in range(100)]
    assert codes[:21] == [401] * 21 and set(codes[21:]) == {429}  # the 21st is checked, then paced
    waited = c.get("/v1/models", headers={"Authorization": "Bearer sk-right"})
    assert waited.status_code == 429 and waited.headers["retry-after"] == "1"  # a second, not 15 minutes
    clock[0] += 1.01
    assert c.get("/v1/models", headers={"Authorization": "Bearer sk-right"}).status_code == 200
    clock[0] += 1.01
    assert c.get("/v1/models", headers={"Authorization": "Bearer sk-101"}).status_code == 401  # one guess...
    assert c.get("/v1/models", headers={"Authorization": "Bearer sk-102"}).status_code == 429  # ...a second


def test_metrics_name_no_accounts_fine_tune_and_label_routes_by_template(store, tmp_path):
    from checkpoints import CHATML, tiny_with_template

    base = load_served(f"tiny={tiny_with_template(tmp_path, 'tiny', CHATML)}")
    user = store.accounts.create_user("alice", "a long passphrase 123")
    key = store.accounts.create_key("alice", user["id"])[1]
    tuned = dataclasses.replace(base, id="tiny:ft-alice-secret", base="tiny", owner=user["id"])
    app = create_app([base, tuned], store=store)
    c = client(app)
    alice = {"Authorization": f"Bearer {key}"}
    ask = {"model": "tiny:ft-alice-secret", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert c.post("/v1/chat/completions", json=ask, headers=alice).status_code == 200
    assert c.post("/v1/moderations", json={"input": "hello"}, headers=alice).status_code == 200
    text = c.get("/metrics", headers=alice).text
    assert "ft-alice-secret" not in text and 'model="tiny:fine-tuned"' in text
    assert 'endpoint="/v1/moderations",status="200"' in text and 'endpoint="/moderations"' not in text
    assert 'endpoint="/v1/models/{model_id}"' not in text  # (not asked: no series made up)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("alıce", "looks the same as one that is taken"),  # dotless i
        ("ALİCE", "looks the same as one that is taken"),  # capital I with a dot
        ("a1ice", "looks the same as one that is taken"),
        ("Аlice", "looks the same as one that is taken"),  # Cyrillic A
        ("bob\u0301", "U+0301 (combining acute accent)"),
        ("bo\u200bb", "U+200B (zero width space)"),
        ("b\u202eob", "U+202E (right-to-left override)"),
        ("b\x00ob", "U+0000 (a control character)"),
    ],
)
def test_look_alike_and_control_names_are_refused(store, name, reason):
    from autan.store.errors import Invalid

    store.accounts.create_user("alice", "a long passphrase 123")
    store.accounts.create_user("bob", "a long passphrase 123")
    with pytest.raises(Invalid, match=re.escape(reason)):
        store.accounts.create_user(name, "a long passphrase 123")
    assert [u["username"] for u in store.accounts.users()] == ["alice", "bob"]


def test_a_look_alike_sign_up_is_a_400_with_the_reason(store):
    app = create_app([], policy=Policy(multi_user=True, allow_signup=True), store=store)
    assert client(app).post("/api/register", json={"username": "alice", "password": "a long passphrase"}).is_success
    refused = client(app).post("/api/register", json={"username": "ALİCE", "password": "a long passphrase"})
    assert refused.status_code == 400 and "looks the same as one that is taken" in refused.json()["message"]
    assert client(app).post("/api/register", json={"username": "zoë", "password": "a long passphrase"}).is_success


def test_slow_clients_are_cut_off(store, monkeypatch):
    """One header or body byte every few seconds held a connection for as long as the client liked."""
    import asyncio
    import socket
    import threading
    import time

    import uvicorn

    from autan.http import guard
    from autan.server.launch import bind
    from autan.server.protocol import Protocol

    monkeypatch.setattr(Protocol, "header_seconds", 1.0)
    monkeypatch.setattr(guard, "BODY_SECONDS", 1.0)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app([], store=store), http=Protocol, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        # headers a byte at a time: the server hangs up (the loop's bound is a safety net, not a measure)
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(5)
            closed = False
            for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:
                try:
                    c.sendall(bytes([byte]))
                    time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            assert closed or c.recv(1024) == b""
        # a body that stops coming: 408 in the API's envelope
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(10)
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"model\": ")  # fmt: skip
            answer = c.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408") and b"the request body stopped arriving for 1 s" in answer
        # and a client that is not slow is answered as ever, on the same server
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(10)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
