"""One `autan serve` process for the server tests, started as a user would start it.

It serves the default model and two tiny random checkpoints in Mistral's own format: a
Mistral (sliding window, v3 SentencePiece tokenizer, so fill-in-the-middle works) and a
Mixtral (tekken tokenizer). Requests need the API key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from autan import registry
from checkpoints import tiny_mistral_format
from processes import wait_healthy

API_KEY = "sk-test-autan"
LOGS: dict[str, Path] = {}  # where the server process writes its log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    registry.pull("smollm2", quiet=True)
    root = tmp_path_factory.mktemp("served")
    mistral = tiny_mistral_format(root, "mistral", "mistral_instruct_tokenizer_240323.model.v3", 32768)
    mixtral = tiny_mistral_format(root, "mixtral", "tekken_240911.json", 131072)
    port = free_port()
    LOGS["server"] = root / "server.log"
    log = open(root / "server.log", "w")  # noqa: SIM115  (closed at teardown)
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "autan.cli",
                "serve",
                "smollm2",
                f"tiny-mistral={mistral}",
                f"tiny-mixtral={mixtral}",
            ),
            *("--port", str(port), "--api-key", API_KEY, "--max-running", "40", "--db", f"sqlite:///{root / 'c.db'}"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AUTAN_API_KEYS": ""},
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, root / "server.log")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def metric(url: str, name: str, model: str, **labels: str) -> float:
    """A sample of /metrics (read with the key); 0 for a counter with no sample yet."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    want = {"model": model, **labels}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and dict(_labels(head)) == want:
            return float(value)
    if name.endswith("_total"):
        return 0.0
    raise KeyError(name)


def _labels(sample: str) -> list[tuple[str, str]]:
    inside = sample[sample.index("{") + 1 : sample.rindex("}")]
    return [(k, v.strip('"')) for k, _, v in (part.partition("=") for part in inside.split(",") if part)]


def wait_until_idle(url: str, model: str) -> None:
    """Until the model runs and queues nothing (a property the tests then check; the minutes
    allowed are a safety net for a loaded machine, not a speed bound)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metric(url, "autan_requests_running", model) == 0 and metric(url, "autan_requests_waiting", model) == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{model} still busy after 300 s")


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def chatml_path(tmp_path_factory):
    """A tiny random Llama with the default model's tokenizer and a plain ChatML template."""
    from checkpoints import tiny_with_template

    return tiny_with_template(tmp_path_factory.mktemp("chatml"), "tiny-chatml", CHATML)


class Live:
    """An app served by uvicorn on a free port of 127.0.0.1, in a thread of the test process, so a
    test can reach into its engines while real clients talk to it over real sockets."""

    def __init__(self, app):
        import asyncio
        import threading

        import uvicorn

        from autan.server.launch import bind

        self.app = app
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live():
    servers = []

    def start(app):
        servers.append(Live(app))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
