"""The conversation store, on SQLite and on PostgreSQL: trees, search, export/import, users."""

import pytest

from autan.store.db import Invalid, NotFound, Store, check_password, hash_password


def test_messages_form_a_tree_and_branches_survive(store):
    c = store.create_conversation(None, model="smollm2", system_prompt="Be brief.")
    q = store.add_message(None, c["id"], role="user", content="What is 2+2?", parent_id=None)
    a1 = store.add_message(None, c["id"], role="assistant", content="4", parent_id=q["id"])
    a2 = store.add_message(None, c["id"], role="assistant", content="Four.", parent_id=q["id"])  # regenerated
    q2 = store.add_message(None, c["id"], role="user", content="What is 2+3?", parent_id=None)  # edited question
    full = store.get_conversation(None, c["id"])
    assert full["current_leaf_id"] == q2["id"]
    parents = {m["id"]: m["parent_id"] for m in full["messages"]}
    assert parents == {q["id"]: None, a1["id"]: q["id"], a2["id"]: q["id"], q2["id"]: None}
    store.update_conversation(None, c["id"], current_leaf_id=a1["id"])
    assert store.get_conversation(None, c["id"])["current_leaf_id"] == a1["id"]
    with pytest.raises(Invalid, match="not in conversation"):
        store.add_message(None, c["id"], role="user", content="x", parent_id="nope")


def test_a_streaming_answer_is_saved_as_it_grows(store):
    c = store.create_conversation(None)
    q = store.add_message(None, c["id"], role="user", content="Tell a story", parent_id=None)
    a = store.add_message(None, c["id"], role="assistant", content="", parent_id=q["id"], status="streaming")
    for text in ("Once", "Once upon", "Once upon a time"):
        store.update_message(None, a["id"], content=text, status=None, stats=None)  # as the app sends it
        reopened = Store(str(store.engine.url.render_as_string(hide_password=False)))  # as after a restart
        saved = next(m for m in reopened.get_conversation(None, c["id"])["messages"] if m["id"] == a["id"])
        assert saved["content"] == text and saved["status"] == "streaming"
        reopened.engine.dispose()
    store.update_message(None, a["id"], status="stopped", stats={"tokens": 4, "finish_reason": "stopped"})
    with pytest.raises(Invalid, match="status 'done'"):
        store.update_message(None, a["id"], status="done")


def test_list_search_rename_delete(store):
    first = store.create_conversation(None, title="Cheese of France")
    second = store.create_conversation(None, title="Rust lifetimes")
    store.add_message(
        None, second["id"], role="user", content="Explain the borrow checker, 100% please", parent_id=None
    )
    assert [c["id"] for c in store.list_conversations(None)] == [second["id"], first["id"]]  # newest first
    assert [c["id"] for c in store.list_conversations(None, "cheese")] == [first["id"]]  # titles, any case
    assert [c["id"] for c in store.list_conversations(None, "borrow")] == [second["id"]]  # contents
    assert [c["id"] for c in store.list_conversations(None, "100%")] == [second["id"]]  # % is literal
    assert store.list_conversations(None, "_") == []  # so is _
    store.update_conversation(None, first["id"], title="Fromages")
    assert store.list_conversations(None)[0]["title"] == "Fromages"
    with pytest.raises(Invalid, match="1 to 200 characters"):
        store.update_conversation(None, first["id"], title="  ")
    store.delete_conversation(None, second["id"])
    assert [c["id"] for c in store.list_conversations(None)] == [first["id"]]
    with pytest.raises(NotFound):
        store.get_conversation(None, second["id"])


def test_export_then_import_keeps_every_branch(store):
    c = store.create_conversation(None, title="Branches", temperature=0.3, safe_prompt=True)
    q = store.add_message(None, c["id"], role="user", content="hi", parent_id=None)
    store.add_message(None, c["id"], role="assistant", content="hello", parent_id=q["id"])
    store.add_message(None, c["id"], role="assistant", content="hey <script>x</script>", parent_id=q["id"])
    document = store.export(None, c["id"])
    copy = store.import_(None, document)
    assert copy["id"] != c["id"] and copy["title"] == "Branches" and copy["temperature"] == 0.3 and copy["safe_prompt"]
    shape = lambda d: sorted((m["role"], m["content"]) for m in d["messages"])  # noqa: E731
    assert shape(copy) == shape(document)
    leaf = next(m for m in copy["messages"] if m["id"] == copy["current_leaf_id"])
    assert leaf["content"] == "hey <script>x</script>"
    with pytest.raises(Invalid, match="not an autan conversation export"):
        store.import_(None, {"messages": []})


def test_users_see_only_their_own(store):
    alice, bob = store.create_user("alice", "correct horse"), store.create_user("bob", "battery staple")
    with pytest.raises(Invalid, match="taken"):
        store.create_user("alice", "another password")
    with pytest.raises(Invalid, match="at least 8"):
        store.create_user("carol", "short")
    mine = store.create_conversation(alice, title="secret plans")
    assert store.list_conversations(bob) == [] and store.list_conversations(None) == []
    with pytest.raises(NotFound):
        store.get_conversation(bob, mine["id"])
    token = store.login("alice", "correct horse")
    assert store.user_for(token) == (alice, "alice")
    assert store.login("alice", "wrong password") is None
    store.logout(token)
    assert store.user_for(token) is None


def test_passwords_are_salted_hashes():
    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one != two and "s3cret" not in one
    assert check_password("s3cret-pass", one) and not check_password("s3cret-pasS", one)
