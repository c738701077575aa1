"""The chat app in headless Chromium (Debian's, driven by Playwright), against a real `autan serve`.

The server serves the default model (slow enough on a CPU to stop mid-answer) and a tiny random
Mixtral (fast, for everything else), with conversations in a SQLite file that outlives restarts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from autan import registry
from checkpoints import tiny_mistral_format
from processes import wait_healthy

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Server:
    url: str
    args: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        wait_healthy(self.url, self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    registry.pull("smollm2", quiet=True)
    root = tmp_path_factory.mktemp("web")
    tiny = tiny_mistral_format(root, "mixtral", "tekken_240911.json", 131072)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "autan.cli", "serve", "tiny=" + str(tiny), "smollm2", "--port", str(port)]
    args += ["--db", f"sqlite:///{root / 'chats.db'}"]
    server = Server(f"http://127.0.0.1:{port}", args, root / "server.log")
    os.environ.pop("AUTAN_API_KEYS", None)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=30)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: run scripts/setup.sh --test"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    yield page
    context.close()
    assert not errors, errors
