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
