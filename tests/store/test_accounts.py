"""Multi-user mode through the app's routes: accounts, sessions, and conversations kept apart."""

import pytest
from fastapi.testclient import TestClient

from autan.server.app import create_app
from autan.store.db import Store


@pytest.fixture
def app(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'users.db'}")
    return create_app([], api_keys=["sk-key"], store=store, multi_user=True)


def test_each_user_sees_only_their_own_conversations(app):
    alice, bob, stranger = TestClient(app), TestClient(app), TestClient(app)
    assert stranger.get("/api/conversations").status_code == 401
    assert alice.get("/api/me").json() == {"multi_user": True, "user": None}
    assert alice.post("/api/register", json={"username": "alice", "password": "correct horse"}).status_code == 200
    assert bob.post("/api/register", json={"username": "bob", "password": "battery staple"}).status_code == 200
    assert alice.get("/api/me").json()["user"] == "alice"
    mine = alice.post("/api/conversations", json={"title": "alice's plans"}).json()
    assert [c["title"] for c in alice.get("/api/conversations").json()] == ["alice's plans"]
    assert bob.get("/api/conversations").json() == []
    assert bob.get(f"/api/conversations/{mine['id']}").status_code == 404
    assert bob.delete(f"/api/conversations/{mine['id']}").status_code == 404
    taken = stranger.post("/api/register", json={"username": "alice", "password": "whatever123"})
    assert taken.status_code == 400 and "taken" in taken.json()["message"]
    wrong = stranger.post("/api/login", json={"username": "alice", "password": "nope nope"})
    assert wrong.status_code == 401


def test_the_api_key_still_guards_v1_but_a_signed_in_user_passes(app):
    user, anonymous = TestClient(app), TestClient(app)
    assert anonymous.get("/v1/models").status_code == 401
    assert anonymous.get("/v1/models", headers={"Authorization": "Bearer sk-key"}).status_code == 200
    user.post("/api/register", json={"username": "carol", "password": "long enough"})
    assert user.get("/v1/models").status_code == 200
    user.post("/api/logout")
    assert user.get("/v1/models").status_code == 401
