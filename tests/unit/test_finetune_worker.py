"""The fine-tuning worker outlives a store that is out of reach for a while: the job queued
meanwhile is still taken and ended (here: failed, with the reason, as its model is not served)."""

import json
import threading
import time
from types import SimpleNamespace

from sqlalchemy.exc import OperationalError

from autan.config import ModelConfig
from autan.finetune.jobs import Jobs
from autan.store.db import Store


def test_the_worker_goes_on_after_the_store_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path / "home"))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    jobs = Jobs(store)
    row = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    file = jobs.add_file(None, "train.jsonl", "fine-tune", (json.dumps(row) + "\n").encode())
    shape = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, hidden_dim=128, vocab_size=128,
                        norm_eps=1e-5, rope_theta=1e4, max_seq_len=512)  # fmt: skip
    model = SimpleNamespace(config=shape)
    served = SimpleNamespace(engine=SimpleNamespace(engine=SimpleNamespace(model=model)), path=tmp_path / "tiny")
    job = jobs.create(None, "openai", {"model": "tiny", "training_file": file["id"]}, {"tiny": served})
    working, failures = store.session, []

    def flaky():  # out of reach twice, for the worker's thread
        if threading.current_thread().name == "fine-tuning" and len(failures) < 2:
            failures.append(1)
            raise OperationalError("SELECT 1", {}, Exception("the database is restarting"))
        return working()

    monkeypatch.setattr(store, "session", flaky)
    jobs.start({}, lambda *_: None)  # serves no model: the job must fail, saying so
    try:
        deadline = time.monotonic() + 120  # a safety net for a loaded machine, not a speed bound
        while jobs.get(None, job["id"])["status"] in ("queued", "running") and time.monotonic() < deadline:
            jobs.wake.set()
            time.sleep(0.2)
        found = jobs.get(None, job["id"])
    finally:
        jobs.close()
    assert len(failures) == 2
    assert found["status"] == "failed" and "model 'tiny' is not served by this server" in found["error"]["message"]
