"""Accounts in the store, on SQLite and PostgreSQL: names, passwords, sessions and keys as hashes."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from autan.store.accounts import Principal, check_password, hash_password, token_hash
from autan.store.db import Invalid, NotFound
from autan.store.tables import ApiKey, Session, now


def test_names_are_one_whatever_their_case_and_the_first_account_is_the_admin(store):
    accounts = store.accounts
    alice = accounts.create_user("Alice", "correct horse")
    assert alice["admin"] and alice["username"] == "Alice"
    for same in ("alice", "ALICE", " alice ", "ａｌｉｃｅ"):  # the last in full-width letters (NFKC)
        with pytest.raises(Invalid, match="taken"):
            accounts.create_user(same, "another password")
    bob = accounts.create_user("bob", "battery staple")
    assert not bob["admin"]
    assert accounts.check_password("ALICE", "correct horse") == Principal(alice["id"], "Alice", True)
    assert accounts.check_password("alice", "Correct horse") is None
    with pytest.raises(Invalid, match="8 to 1024"):
        accounts.create_user("carol", "short")
    with pytest.raises(Invalid, match="only admin"):
        accounts.remove_user(alice["id"])
    accounts.remove_user(bob["id"])
    with pytest.raises(NotFound):
        accounts.user_named("bob")


def test_sessions_are_kept_as_hashes_and_expire(store):
    accounts = store.accounts
    user = accounts.create_user("dana", "long enough")
    principal = Principal(user["id"], "dana", True)
    token = accounts.new_session(principal)
    assert accounts.session(token).principal == principal
    with store.session() as db:
        kept = db.scalars(select(Session.token_hash)).all()
    assert kept == [token_hash(token)] and token not in kept  # a copy of the database signs nobody in
    with store.session() as db:  # as if a month had passed
        db.execute(update(Session).values(expires_at=now() - timedelta(minutes=1)))
    assert accounts.session(token) is None
    with store.session() as db:
        assert db.scalars(select(Session)).all() == []  # and it is gone
    again = accounts.new_session(principal)
    accounts.end_session(again)
    assert accounts.session(again) is None


def test_api_keys_are_shown_once_and_kept_as_hashes(store):
    accounts = store.accounts
    user = accounts.create_user("erin", "long enough")
    record, key = accounts.create_key("ci", user["id"])
    assert key.startswith("sk-autan-") and accounts.key_owner(key) == Principal(user["id"], "erin", True)
    assert accounts.key_owner(key + "x") is None and accounts.has_keys()
    with store.session() as db:
        assert db.scalars(select(ApiKey.key_hash)).all() == [token_hash(key)]
    assert [k["name"] for k in accounts.api_keys()] == ["ci"] and "key" not in accounts.api_keys()[0]
    accounts.remove_key(record["id"])
    assert accounts.key_owner(key) is None and not accounts.has_keys()


def test_an_unknown_name_costs_a_password_check_too(store, monkeypatch):
    """Refusing a name that does not exist takes the same scrypt work as a wrong password, so
    the time of an answer tells nothing about which names exist."""
    store.accounts.create_user("frank", "long enough")
    checks = []
    import autan.store.accounts as module

    monkeypatch.setattr(module, "check_password", lambda p, h: checks.append(h) or check_password(p, h))
    assert store.accounts.check_password("frank", "wrong password") is None
    assert store.accounts.check_password("nobody-at-all", "wrong password") is None
    assert len(checks) == 2 and checks[0] != checks[1]  # the second against a stand-in hash


def test_passwords_are_salted_hashes():
    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one != two and "s3cret" not in one
    assert check_password("s3cret-pass", one) and not check_password("s3cret-pasS", one)
