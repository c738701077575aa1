"""The fine-tuning API as clients use it, on `autan serve` with a tiny model: the openai SDK's
files.create + fine_tuning.jobs.create/retrieve/list_events flow, Mistral's HTTP shape, cancel,
a job that survives a restart of the server, the finished adapter in /v1/models and answering,
bad input refused with the reason, and one account's files out of another's reach."""

import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from checkpoints import CHATML
from processes import free_port, wait_healthy


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from checkpoints import tiny_with_template

    root = tmp_path_factory.mktemp("ft-api")
    model = tiny_with_template(root, "tiny", CHATML)
    rows = [{"messages": [{"role": "user", "content": f"Number {i}?"}, {"role": "assistant", "content": f"It is {i}."}]}
            for i in range(16)]  # fmt: skip
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model, root


class Server:
    def __init__(self, model, root, name, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root / f"{name}.log", "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autan.cli", "serve", f"tiny={model}", "--port", str(self.port),
             "--db", f"sqlite:///{root / 'store.db'}"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
        wait_healthy(self.url, self.process, root / f"{name}.log")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def until(check, what, seconds=600):
    """Poll until `check()` is true (a safety net for a loaded machine, not a speed bound)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(what)


def test_the_openai_flow_makes_a_model_that_answers(setup):
    model, root = setup
    server = Server(model, root, "openai")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none")
        uploaded = client.files.create(file=(root / "train.jsonl").open("rb"), purpose="fine-tune")
        assert uploaded.bytes == (root / "train.jsonl").stat().st_size and uploaded.filename == "train.jsonl"
        assert [f.id for f in client.files.list().data] == [uploaded.id]
        job = client.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id, suffix="numbers",
                                             hyperparameters={"n_epochs": 2, "batch_size": 4})  # fmt: skip
        assert job.status in ("queued", "running") and job.model == "tiny"
        done = until(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                     "the job to end")  # fmt: skip
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model.startswith("tiny:ft-numbers-") and done.trained_tokens > 0
        events = client.fine_tuning.jobs.list_events(job.id).data
        losses = [e.data["train_loss"] for e in reversed(events) if e.type == "metrics" and "total_steps" in e.data]
        assert len(losses) == 8  # 16 examples / 4 * 2 epochs, every step reported
        assert next(e.message for e in events) == "Job succeeded"
        assert [j.id for j in client.fine_tuning.jobs.list().data] == [job.id]
        assert done.fine_tuned_model in {m.id for m in client.models.list().data}
        answer = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=4, temperature=0,
                                                messages=[{"role": "user", "content": "Number 3?"}])  # fmt: skip
        assert answer.model == done.fine_tuned_model and answer.choices[0].message.content is not None
        # the adapter in the job's folder is PEFT's, and serves again after a restart
        server.stop()
        server = Server(model, root, "openai-again")
        ids = {m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
        assert done.fine_tuned_model in ids
    finally:
        server.stop()


def test_mistrals_shape_cancel_and_a_job_across_a_restart(setup):
    model, root = setup
    hold = root / "hold-at-a-checkpoint"  # the job waits at its first checkpoint while this file exists
    hold.touch()
    server = Server(model, root, "mistral", env={"AUTAN_FINETUNE_HOLD": str(hold)})
    try:
        with open(root / "train.jsonl", "rb") as f:
            uploaded = httpx.post(f"{server.url}/v1/files", files={"file": f}, data={"purpose": "fine-tune"}).json()
        assert uploaded["num_lines"] == 16 and uploaded["object"] == "file"
        body = {"model": "tiny", "training_files": [{"file_id": uploaded["id"], "weight": 1}],
                "hyperparameters": {"training_steps": 40, "learning_rate": 1e-3, "batch_size": 2}}  # fmt: skip
        long = httpx.post(f"{server.url}/v1/fine_tuning/jobs", json=body).json()
        assert long["status"] in ("QUEUED", "RUNNING") and long["object"] == "job"
        # stop the server while the job is held at its first checkpoint; start it again (no hold):
        # the job goes on from there
        held = until(lambda: [c["step_number"] for c in httpx.get(f"{server.url}/v1/fine_tuning/jobs/{long['id']}")
                              .json()["checkpoints"]], "a checkpoint")  # fmt: skip
        assert held == [4]  # about ten checkpoints a run: every 4th step of 40
        server.stop()
        hold.unlink()
        server = Server(model, root, "mistral-again")
        done = until(lambda: (j := httpx.get(f"{server.url}/v1/fine_tuning/jobs/{long['id']}").json())["status"]
                     in ("SUCCESS", "FAILED") and j, "the resumed job to end")  # fmt: skip
        assert done["status"] == "SUCCESS", done["events"][-1]
        names = [e["name"] for e in done["events"]]
        assert "Job resumed after a restart" in names
        steps = [e["data"]["step"] for e in done["events"] if "total_steps" in e["data"] and "train_loss" in e["data"]]
        assert steps == list(range(1, 41))  # steps 1-4 before the restart, 5-40 after it: none run twice
        # a job cancelled while it runs ends cancelled, and makes no model
        body["hyperparameters"]["training_steps"] = 10_000
        doomed = httpx.post(f"{server.url}/v1/fine_tuning/jobs", json=body).json()
        until(lambda: httpx.get(f"{server.url}/v1/fine_tuning/jobs/{doomed['id']}").json()["status"] == "RUNNING",
              "the job to start")  # fmt: skip
        httpx.post(f"{server.url}/v1/fine_tuning/jobs/{doomed['id']}/cancel")
        ended = until(lambda: (j := httpx.get(f"{server.url}/v1/fine_tuning/jobs/{doomed['id']}").json())["status"]
                      == "CANCELLED" and j, "the job to stop")  # fmt: skip
        assert ended["fine_tuned_model"] is None
    finally:
        server.stop()


def test_bad_requests_are_refused_with_the_reason(setup):
    model, root = setup
    server = Server(model, root, "bad")
    try:
        post = lambda path, **kw: httpx.post(f"{server.url}{path}", **kw)  # noqa: E731
        bad = post("/v1/files", files={"file": ("x.jsonl", b'{"messages": [{"role": "user", "content": "a"}]}\n')})
        assert bad.status_code == 400 and "x.jsonl:1: the conversation has no assistant message" in bad.text, bad.text
        bad = post("/v1/files", files={"file": ("x.jsonl", b"not json\n")})
        assert bad.status_code == 400 and "x.jsonl:1: not JSON" in bad.text
        with open(root / "train.jsonl", "rb") as f:
            good = post("/v1/files", files={"file": f}).json()
        nope = post("/v1/fine_tuning/jobs", json={"model": "gpt-9", "training_file": good["id"]})
        assert nope.status_code == 404 and "model 'gpt-9' is not served here; available: tiny" in nope.text
        nope = post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": "file-missing"})
        assert nope.status_code == 404 and "no file 'file-missing'" in nope.text
        nope = post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": good["id"],
                                                 "hyperparameters": {"n_epochs": 0}})  # fmt: skip
        assert nope.status_code == 400 and "n_epochs 0 must be between 1 and 50" in nope.text
        assert httpx.get(f"{server.url}/v1/fine_tuning/jobs/ftjob-nothing").status_code == 404
        assert httpx.delete(f"{server.url}/v1/files/{good['id']}").json()["deleted"] is True
        assert httpx.get(f"{server.url}/v1/files/{good['id']}").status_code == 404
    finally:
        server.stop()


def test_one_accounts_files_and_jobs_are_out_of_anothers_reach(setup, tmp_path):
    """Through the API with two accounts' keys (`autan key add --user`): each sees only its own."""
    from autan.store.db import Store

    model, root = setup
    store = Store(f"sqlite:///{root / 'store.db'}")
    keys = {}
    for name in ("alice", "bob"):
        user = store.accounts.create_user(f"{name}-{tmp_path.name[-6:]}", "a long passphrase 123")
        keys[name] = store.accounts.create_key(name, user["id"])[1]
    server = Server(model, root, "accounts")
    try:
        as_ = {n: {"Authorization": f"Bearer {k}"} for n, k in keys.items()}
        with open(root / "train.jsonl", "rb") as f:
            mine = httpx.post(f"{server.url}/v1/files", files={"file": f}, headers=as_["alice"]).json()
        body = {"model": "tiny", "training_file": mine["id"], "hyperparameters": {"n_epochs": 1}}
        job = httpx.post(f"{server.url}/v1/fine_tuning/jobs", headers=as_["alice"], json=body).json()
        assert httpx.get(f"{server.url}/v1/files/{mine['id']}", headers=as_["bob"]).status_code == 404
        assert httpx.get(f"{server.url}/v1/files", headers=as_["bob"]).json()["data"] == []
        assert httpx.get(f"{server.url}/v1/fine_tuning/jobs/{job['id']}", headers=as_["bob"]).status_code == 404
        assert httpx.post(f"{server.url}/v1/fine_tuning/jobs/{job['id']}/cancel", headers=as_["bob"]).status_code == 404
        stolen = httpx.post(f"{server.url}/v1/fine_tuning/jobs", headers=as_["bob"],
                            json={"model": "tiny", "training_file": mine["id"]})  # fmt: skip
        assert stolen.status_code == 404 and "no file" in stolen.text
        assert (
            httpx.get(f"{server.url}/v1/files/{mine['id']}/content", headers=as_["alice"]).content
            == (root / "train.jsonl").read_bytes()
        )
        assert httpx.get(f"{server.url}/v1/files", headers={}).status_code == 401  # the server is locked by keys

        # the model the job makes is alice's alone: bob neither sees it nor reaches it by name
        def done():
            found = httpx.get(f"{server.url}/v1/fine_tuning/jobs/{job['id']}", headers=as_["alice"]).json()
            return found if found["status"] in ("succeeded", "failed") else None

        made = until(done, "alice's job")
        assert made["status"] == "succeeded", made
        tuned = made["fine_tuned_model"]
        listed = {n: [m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=h).json()["data"]]
                  for n, h in as_.items()}  # fmt: skip
        assert tuned in listed["alice"] and tuned not in listed["bob"] and "tiny" in listed["bob"]
        ask = {"model": tuned, "messages": [{"role": "user", "content": "Number 3?"}], "max_tokens": 4}
        assert httpx.post(f"{server.url}/v1/chat/completions", headers=as_["alice"], json=ask).status_code == 200
        for path, body in (("/v1/chat/completions", ask), ("/v1/completions", {"model": tuned, "prompt": "Hi"}),
                           ("/v1/moderations", {"model": tuned, "input": "Hi"}), ("/tokenize", {"model": tuned,
                           "prompt": "Hi"})):  # fmt: skip
            refused = httpx.post(f"{server.url}{path}", headers=as_["bob"], json=body)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["message"].count(tuned) == 1, refused.text  # only as asked, never as available
        assert httpx.get(f"{server.url}/v1/models/{tuned}", headers=as_["bob"]).status_code == 404
    finally:
        server.stop()
