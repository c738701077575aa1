"""The second probe's findings, each as a test that failed before its fix."""

import dataclasses
import json
import os
import re
import threading

import pytest
from fastapi.testclient import TestClient

from autan.http import auth
from autan.http.auth import Policy
from autan.server.app import create_app
from autan.server.served import load_served
from autan.store.db import Store
from conftest import Live


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

    from autan.http import gate
    from autan.server.launch import bind
    from autan.server.protocol import Protocol

    monkeypatch.setattr(Protocol, "header_seconds", 1.0)
    monkeypatch.setattr(gate, "BODY_SECONDS", 1.0)
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
            answer = b""
            while b"stopped arriving" not in answer and (part := c.recv(4096)):
                answer += part
            assert answer.startswith(b"HTTP/1.1 408") and b"the request body stopped arriving for 1 s" in answer
        # and a client that is not slow is answered as ever, on the same server
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(10)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from checkpoints import CHATML, tiny_with_template

    root = tmp_path_factory.mktemp("ft-hardening")
    path = tiny_with_template(root, "tiny", CHATML)
    rows = [{"messages": [{"role": "user", "content": f"Number {i}?"}, {"role": "assistant", "content": f"It is {i}."}]}
            for i in range(8)]  # fmt: skip
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return path, data


def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Peak:
    """The most memory this process holds while the block runs (sampled every few milliseconds)."""

    def __enter__(self):
        self.base, self.peak, self.done = rss(), rss(), threading.Event()
        self.thread = threading.Thread(target=self._watch)
        self.thread.start()
        return self

    def _watch(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def test_a_fine_tune_at_the_longest_accepted_seq_len_stays_in_its_budget(store, tmp_path, monkeypatch):
    """The budget binds below the model's context: one token more than it allows is a 400 naming
    seq_len and batch_size, and a run on one example that long stays within the budget."""
    import autan
    from autan.finetune.train import TrainConfig, peak_bytes, train, training_weights
    from checkpoints import CHATML, tiny_with_template

    wide = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, max_position_embeddings=8192)
    path = tiny_with_template(tmp_path, "long", CHATML, **wide)  # what a token holds is most of the budget
    config = autan.load_model(path).config
    longest = 6000
    budget = peak_bytes(config, longest, training_weights(config, path))
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path / "home"))
    c = client(create_app([load_served(f"tiny={path}")], store=store, finetune_memory=budget))
    words = " ".join(f"w{i}" for i in range(longest))  # one example longer than accepted
    reply = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": words}]}
    data = json.dumps(reply) + "\n"
    file = c.post("/v1/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]

    def job(seq_len):
        hyper = {"seq_len": seq_len, "batch_size": 8, "training_steps": 1}
        return c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_files": [{"file_id": file}],
                                                    "hyperparameters": hyper})  # fmt: skip

    refused = job(longest + 1)
    assert refused.status_code == 400 and refused.json()["param"] == "seq_len"
    assert re.search(rf"seq_len {longest + 1} with batch_size 8 needs about .* at most seq_len {longest} fits",
                     refused.json()["message"])  # fmt: skip
    assert job(longest).status_code == 200
    over_context = job(8193)
    assert over_context.status_code == 400 and "8193" in over_context.json()["message"]
    (tmp_path / "long.jsonl").write_text(data)
    run = TrainConfig(steps=2, batch_size=1, max_seq_len=longest, pack_tokens=longest)
    with Peak() as peak:
        train(path, tmp_path / "long.jsonl", tmp_path / "out", run, report=lambda p: None)
    assert peak.growth <= budget, (peak.growth / 2**20, budget / 2**20)


def test_a_huge_job_starts_at_once_and_stops_at_its_first_check(tiny, tmp_path):
    """A million steps of 256 made a 2.56e8-entry order list before the first step (94 s, 2.1 GB)."""
    from autan.finetune.train import TrainConfig, train

    path, data = tiny
    (tmp_path / "d.jsonl").write_bytes(data)
    checks = []

    def stop():
        checks.append(1)
        return len(checks) > 1  # after one step

    with Peak() as peak:
        result = train(path, tmp_path / "d.jsonl", tmp_path / "out", TrainConfig(steps=10**6, batch_size=256),
                       report=lambda p: None, stop=stop)  # fmt: skip
    assert result.stopped and result.steps == 1
    assert peak.growth < 512 * 2**20, peak.growth / 2**20


def test_one_account_cannot_queue_the_machine_and_others_go_first(tiny, store, monkeypatch):
    from autan.errors import Limited
    from autan.finetune.jobs import MAX_ACTIVE, Jobs

    path, data = tiny
    monkeypatch.setenv("AUTAN_HOME", str(store.engine.url.database.rsplit("/", 1)[0]))
    served = {"tiny": load_served(f"tiny={path}")}
    alice, bob = (store.accounts.create_user(n, "a long passphrase 123")["id"] for n in ("alice", "bob"))
    jobs = Jobs(store)
    files = {who: jobs.add_file(who, "t.jsonl", "fine-tune", data)["id"] for who in (alice, bob)}
    made = [jobs.create(alice, "openai", {"model": "tiny", "training_file": files[alice]}, served)["id"]
            for _ in range(MAX_ACTIVE)]  # fmt: skip
    with pytest.raises(Limited, match=f"this account has {MAX_ACTIVE} fine-tuning jobs queued or running"):
        jobs.create(alice, "openai", {"model": "tiny", "training_file": files[alice]}, served)
    bobs = jobs.create(bob, "openai", {"model": "tiny", "training_file": files[bob]}, served)["id"]
    assert jobs.pick() == made[0] and jobs.pick() == bobs  # bob's, made last, runs second


def test_fine_tuning_input_is_checked_at_create(tiny, store, tmp_path, monkeypatch):
    path, data = tiny
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path / "home"))
    app = create_app([load_served(f"tiny={path}")], store=store)  # (its worker is not started: jobs stay queued)
    c = client(app)
    good = c.post("/v1/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
    deep = "[" * 200_000 + "]" * 200_000
    nested = c.post("/v1/fine_tuning/jobs", content=f'{{"model": "tiny", "hyperparameters": {deep}}}',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert nested.status_code == 400 and "nested too deeply" in nested.text
    line = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    refused = c.post("/v1/files", files={"file": ("d.jsonl", line)}, data={"purpose": "fine-tune"})
    assert refused.status_code == 400 and "d.jsonl:1: nested too deeply" in refused.text
    for body, reason in [
        ({"hyperparameters": {"n_epochs": 10**400}}, "n_epochs 10000000000000000000... (401 characters) must be"),
        ({"validation_file": 123}, "validation_file: name the validation file by id"),
        ({"validation_file": [good]}, "validation_file: name the validation file by id"),
        ({"suffix": "é٣"}, "suffix 'é٣' must be 1 to 40 ASCII letters"),
    ]:
        answer = c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": good, **body})
        assert answer.status_code == 400 and reason in answer.json()["message"], answer.text
        assert "/" not in answer.json()["message"].replace("1 to 40", "")  # no path of the server's
    job = c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": good}).json()
    in_use = c.delete(f"/v1/files/{good}")
    assert in_use.status_code == 409 and f"in use by fine-tuning job {job['id']}" in in_use.text
    mistral = c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_files": [{"file_id": good}],
                                                   "hyperparameters": {"epochs": 2}})  # fmt: skip
    assert mistral.status_code == 200 and mistral.json()["status"] == "QUEUED"


@pytest.fixture(scope="module")
def smollm2():
    return load_served("smollm2")


def test_odd_requests_to_the_new_apis_are_400s(smollm2, store):
    """The review's findings: each was a 500 with a traceback."""
    c = client(create_app([smollm2], store=store))
    for path, body, reason in [
        ("/v1/responses", {"model": "smollm2", "input": []}, "messages"),
        ("/v1/responses", {"model": "smollm2", "input": "x", "text": {"format": "json_object"}}, "text.format must"),
        ("/v1/responses", {"model": "smollm2", "input": "x", "text": {"format": {"type": "no"}}}, "text.format must"),
        ("/v1/messages", {"model": "smollm2", "max_tokens": 4, "stop_sequences": [""],
                          "messages": [{"role": "user", "content": "x"}]}, "stop"),
        ("/v1/messages", {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"text": "x"}]}]}]}, "a tool_result holds a None"),
    ]:  # fmt: skip
        answer = c.post(path, json=body)
        assert answer.status_code == 400, (path, body, answer.text)
        message = answer.json().get("message") or answer.json()["error"]["message"]
        assert reason in message, (reason, message)


def test_a_batch_line_that_fails_does_not_stop_the_batch(smollm2, store, tmp_path, monkeypatch):
    """An app error raised through the in-process transport made the runner retry the same line forever."""
    import time

    import openai

    monkeypatch.setenv("AUTAN_HOME", str(tmp_path / "home"))
    live = Live(create_app([smollm2], store=store))
    try:
        api = openai.OpenAI(base_url=f"{live.url}/v1", api_key="EMPTY")
        rows = [{"custom_id": "bad", "url": "/v1/responses", "body": {"model": "smollm2", "input": []}},
                {"custom_id": "good", "url": "/v1/responses", "body": {"model": "smollm2", "input": "Hi",
                                                                        "max_output_tokens": 2}}]  # fmt: skip
        source = api.files.create(file=("b.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                                  purpose="batch")  # fmt: skip
        batch = api.batches.create(input_file_id=source.id, endpoint="/v1/responses", completion_window="24h")
        deadline = time.monotonic() + 300  # a safety net for a loaded machine, not a speed bound
        while (done := api.batches.retrieve(batch.id)).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (done.status, done.request_counts.completed, done.request_counts.failed) == ("completed", 1, 1)
    finally:
        live.close()


def test_an_accounts_key_passes_while_its_address_is_paced(store, monkeypatch):
    monkeypatch.setattr(auth.time, "monotonic", lambda: 5000.0)
    user = store.accounts.create_user("alice", "a long passphrase 123")
    key = store.accounts.create_key("alice", user["id"])[1]
    c = client(create_app([], policy=Policy(api_keys=["sk-operator"]), store=store))
    codes = [c.get("/v1/models", headers={"Authorization": f"Bearer sk-{i}"}).status_code for i in range(30)]
    assert codes[-1] == 429  # a guesser on this address is paced...
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200  # ...alice is not
