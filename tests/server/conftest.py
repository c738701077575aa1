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
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
        assert process.poll() is None, (root / "server.log").read_text()
    else:
        raise TimeoutError((root / "server.log").read_text())
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def metric(url: str, name: str, model: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}"}}'):
            return float(line.split()[-1])
    raise KeyError(name)
