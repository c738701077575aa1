"""Batches as clients run them: the openai SDK (a batch file, /v1/batches, the answers' file, the
failed requests' file) and the mistralai SDK (/v1/batch/jobs from a file or inline requests), each
answer equal to the same request sent alone; cancel; a batch held mid-way goes on after a restart
from its first unanswered request; the runner never sends while an interactive request waits; bad
files are refused by line; another account sees nothing."""

import asyncio
import json
import os
import subprocess
import sys
import time

import openai
import pytest

from autan.batches import Batches, check_batch_file
from autan.errors import Invalid
from autan.server.app import create_app
from autan.server.served import load_served
from autan.store.db import Store
from conftest import Live
from processes import free_port, wait_healthy


def chat(i: int, model: str | None = "smollm2") -> dict:
    body = {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "max_tokens": 8, "temperature": 0}
    return {**body, "model": model} if model else body


def lines(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def until(check, what, seconds=600):
    """Poll until `check()` is true (a safety net for a loaded machine, not a speed bound)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('batches') / 'b.db'}")
    keys = {}
    for name in ("alice", "bob"):
        user = store.accounts.create_user(name, "a long passphrase 123")
        keys[name] = store.accounts.create_key(name, user["id"])[1]
    live = Live(create_app([load_served("smollm2")], store=store))
    yield live.url, keys
    live.close()


def test_the_openai_flow_answers_each_request_as_alone(server):
    url, keys = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alice"])
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat(i)} for i in range(3)]
    rows.append({"custom_id": "missing", "method": "POST", "url": "/v1/chat/completions", "body": chat(9, "nope")})
    source = client.files.create(file=("requests.jsonl", lines(rows)), purpose="batch")
    assert source.purpose == "batch"
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "sums"})  # fmt: skip
    done = until(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, "the batch")
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
    assert done.metadata == {"job": "sums"} and [b.id for b in client.batches.list().data] == [batch.id]
    answers = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(a["custom_id"] for a in answers) == ["r0", "r1", "r2"]
    for a in answers:
        alone = client.chat.completions.create(**chat(int(a["custom_id"][1:])))
        assert a["response"]["status_code"] == 200
        assert a["response"]["body"]["choices"][0]["message"]["content"] == alone.choices[0].message.content
    failed = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [(f["custom_id"], f["response"]["status_code"]) for f in failed] == [("missing", 404)]
    assert "model 'nope' is not served here" in failed[0]["error"]["message"]
    # another account sees none of it
    bob = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["bob"])
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(done.output_file_id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert bob.batches.list().data == []


def test_the_mistral_flow_from_a_file_and_inline(server):
    from mistralai.client import Mistral

    url, keys = server
    client = Mistral(api_key=keys["alice"], server_url=url)
    rows = [{"custom_id": str(i), "body": chat(i, None)} for i in range(2)]
    uploaded = client.files.upload(file={"file_name": "batch.jsonl", "content": lines(rows)}, purpose="batch")
    for job in (client.batch.jobs.create(input_files=[uploaded.id], endpoint="/v1/chat/completions", model="smollm2"),
                client.batch.jobs.create(requests=rows, endpoint="/v1/chat/completions", model="smollm2")):  # fmt: skip
        done = until(lambda j=job: (b := client.batch.jobs.get(job_id=j.id)).status == "SUCCESS" and b, "the job")
        assert (done.total_requests, done.succeeded_requests, done.failed_requests) == (2, 2, 0)
        output = client.files.download(file_id=done.output_file).read().decode()
        answers = {a["custom_id"]: a["response"]["body"] for a in map(json.loads, output.splitlines())}
        assert set(answers) == {"0", "1"} and all(a["model"] == "smollm2" for a in answers.values())
    assert {j.id for j in client.batch.jobs.list().data} >= {job.id}


def test_cancel_and_bad_files(server):
    url, keys = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alice"])
    with pytest.raises(openai.BadRequestError, match="requests.jsonl:2: custom_id 'a' is not unique"):
        client.files.create(file=("requests.jsonl", lines([{"custom_id": "a", "body": {}}] * 2)), purpose="batch")
    with pytest.raises(openai.BadRequestError, match=r"requests.jsonl:1: url '/v1/shell' is not one of"):
        client.files.create(file=("requests.jsonl", lines([{"custom_id": "a", "url": "/v1/shell", "body": {}}])),
                            purpose="batch")  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="requests.jsonl:1: not JSON"):
        client.files.create(file=("requests.jsonl", b"{nope\n"), purpose="batch")
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "all-minilm-l6-v2", "input": f"text {i}"}} for i in range(2)]  # fmt: skip
    source = client.files.create(file=("requests.jsonl", lines(rows)), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="is for another endpoint than /v1/chat/completions"):
        client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="was uploaded for 'batch', not 'fine-tune'"):
        client.fine_tuning.jobs.create(model="smollm2", training_file=source.id)
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/embeddings", completion_window="24h")
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelled", "cancelling", "completed")  # it may have been quicker than the cancel
    final = until(lambda: (b := client.batches.retrieve(batch.id)).status in ("cancelled", "completed") and b, "end")
    assert final.request_counts.completed + final.request_counts.failed <= 2


def test_the_runner_waits_while_interactive_requests_wait(tmp_path, monkeypatch):
    """A scripted busy signal: no request is sent while it says an interactive request waits."""
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path))
    from autan.finetune.jobs import Jobs

    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    source = Jobs(store).add_file(
        None, "r.jsonl", "batch", lines([{"custom_id": str(i), "body": {}} for i in range(6)])
    )
    batches = Batches(store)
    batches.create(None, "openai", source["id"], "/v1/embeddings", None, None)
    ticks, sent = [0], []

    def busy() -> bool:  # busy on ticks 0-9, free on 10-12, busy again on 13-29, ...
        ticks[0] += 1
        return (ticks[0] % 20) < 10

    async def send(url, body, owner):
        assert not busy_now[0], "sent while an interactive request waited"
        sent.append(ticks[0])
        return 200, {"object": "list"}

    busy_now = [False]

    def watched() -> bool:
        busy_now[0] = busy()
        return busy_now[0]

    async def run():
        task = asyncio.create_task(batches.run(send, watched))
        while len(sent) < 6:
            await asyncio.sleep(0.01)
        batches.closing = True
        await asyncio.wait_for(task, 30)

    asyncio.run(run())
    assert len(sent) == 6 and all(t % 20 >= 10 for t in sent)


def test_a_batch_held_mid_way_goes_on_after_a_restart(tmp_path):
    hold = tmp_path / "hold"
    hold.touch()
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "AUTAN_HOME": str(tmp_path / "home"), "AUTAN_BATCH_HOLD": str(hold)}

    def start(name, extra):
        port = free_port()
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
        command = [sys.executable, "-m", "autan.cli", "serve", "smollm2", "--port", str(port), "--db", db]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**env, **extra})
        wait_healthy(f"http://127.0.0.1:{port}", process, tmp_path / f"{name}.log")
        return process, f"http://127.0.0.1:{port}"

    process, url = start("first", {})
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
        rows = [{"custom_id": f"r{i}", "url": "/v1/chat/completions", "body": chat(i)} for i in range(3)]
        source = client.files.create(file=("r.jsonl", lines(rows)), purpose="batch")
        batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
        held = until(lambda: (b := client.batches.retrieve(batch.id)).request_counts.completed == 1 and b, "answer 1")
        assert held.status == "in_progress"
    finally:
        process.terminate()
        process.wait(timeout=60)
    hold.unlink()
    process, url = start("second", {"AUTAN_BATCH_HOLD": ""})
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
        done = until(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, "the batch")
        answers = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
        assert sorted(a["custom_id"] for a in answers) == ["r0", "r1", "r2"]  # each once: none ran twice
        assert done.request_counts.completed == 3
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_batch_files_are_checked_line_by_line():
    assert check_batch_file(lines([{"custom_id": "a", "body": {}}, {"custom_id": "b", "body": {"x": 1}}]), "f") == 2
    for rows, reason in [([{"body": {}}], 'f:1: "custom_id" must be'), ([{"custom_id": "a"}], 'f:1: a request is an'),
                         ([{"custom_id": "a", "body": {}, "method": "GET"}], "f:1: method 'GET'")]:  # fmt: skip
        with pytest.raises(Invalid, match=reason):
            check_batch_file(lines(rows), "f")
    with pytest.raises(Invalid, match="f has no requests"):
        check_batch_file(b"\n\n", "f")
