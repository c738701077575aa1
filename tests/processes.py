"""Helpers for tests that start `autan serve` as a user would, in a process of its own."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def wait_healthy(url: str, process: subprocess.Popen, log: Path | None = None, seconds: float = 180) -> None:
    """Until an `autan serve` started as `process` answers /health; its log if it dies or never does."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
        assert process.poll() is None, log.read_text() if log else f"the server exited with {process.returncode}"
    raise TimeoutError(log.read_text() if log else f"{url} did not answer /health in {seconds} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def interruptible() -> None:
    """For `preexec_fn`: Ctrl-C (SIGINT) acts in the child as in a program started from a terminal.
    A test run started in the background of a shell without job control inherits SIGINT ignored,
    and Python then leaves it ignored in every child it starts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
