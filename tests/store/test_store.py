"""The conversation store, on SQLite and on PostgreSQL: trees, search, export/import, odd text."""

import pytest
from pydantic import ValidationError

from autan.store.db import Conflict, Invalid, NotFound, Store


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
    # a partial save that arrives after the final one cannot overwrite it
    with pytest.raises(Conflict, match="is stopped: only a streaming answer grows"):
        store.update_message(None, a["id"], content="Once upon", status=None, stats=None)
    final = next(m for m in store.get_conversation(None, c["id"])["messages"] if m["id"] == a["id"])
    assert final["content"] == "Once upon a time" and final["status"] == "stopped"


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
    alice = store.accounts.create_user("alice", "correct horse")["id"]
    bob = store.accounts.create_user("bob", "battery staple")["id"]
    mine = store.create_conversation(alice, title="secret plans")
    assert store.list_conversations(bob) == [] and store.list_conversations(None) == []
    with pytest.raises(NotFound):
        store.get_conversation(bob, mine["id"])
    with pytest.raises(NotFound):
        store.delete_conversation(bob, mine["id"])


@pytest.mark.parametrize("odd", ["nul \x00 in the middle", "lone \ud800 surrogate", "\udfff\x00\ud83d"])
def test_text_no_database_can_hold_is_kept_with_a_replacement_character(store, odd):
    """PostgreSQL refuses NUL; no UTF-8 encoder takes a lone surrogate. Such a message is saved
    (with U+FFFD in their place) on both databases, searched and exported like any other."""
    expected = odd.replace("\x00", "\ufffd").replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    expected = expected.replace("\ud83d", "\ufffd")
    c = store.create_conversation(None, title=f"title {odd}", system_prompt=odd)
    m = store.add_message(None, c["id"], role="user", content=odd, parent_id=None)
    store.update_message(None, m["id"], content=odd + odd, status="complete")
    full = store.get_conversation(None, c["id"])
    assert full["title"] == f"title {expected}" and full["system_prompt"] == expected
    assert full["messages"][0]["content"] == expected + expected
    assert [x["id"] for x in store.list_conversations(None, odd)] == [c["id"]]  # the query is cleaned alike
    with pytest.raises(NotFound):
        store.get_conversation(None, "id\x00with nul")


def test_import_refuses_what_would_not_load_again(store):
    """A document is checked whole before anything is written: duplicate ids, a parent after its
    child, huge numbers, wrong types, stats nested deep. Nothing is half-imported."""
    good = store.export(None, store.create_conversation(None, title="ok")["id"])
    message = {"id": "a", "parent_id": None, "role": "user", "content": "hi"}
    deep: dict = {}
    for _ in range(300):
        deep = {"x": deep}
    for bad, fragment in [
        ({"messages": [message, {**message, "content": "again"}]}, "appears twice"),
        ({"messages": [{**message, "id": "b", "parent_id": "a"}, message]}, "comes before its parent"),
        ({"max_tokens": 2**70}, "less than or equal to 2147483647"),
        ({"temperature": "abc"}, "valid number"),
        ({"messages": [1]}, "valid dictionary"),
        ({"messages": [{**message, "role": "tool"}]}, "'system', 'user' or 'assistant'"),
        ({"current_leaf_id": "nowhere", "messages": [message]}, "not one of the messages"),
    ]:
        with pytest.raises(ValidationError, match=fragment):
            store.import_(None, {**good, **bad})
    assert len(store.list_conversations(None)) == 1
    nested = {**good, "messages": [{**message, "stats": {"tokens": 3, "nested": deep}}]}
    copy = store.import_(None, nested)  # unknown keys of stats are dropped: nothing can nest
    assert copy["messages"][0]["stats"] == {"tokens": 3}
    assert store.get_conversation(None, copy["id"])["messages"][0]["content"] == "hi"
