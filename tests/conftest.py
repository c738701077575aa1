import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# every result the tests make goes to a leaderboard of their own, never the user's (servers started
# by the tests inherit it)
os.environ["AUTAN_LEADERBOARD"] = str(Path(tempfile.mkdtemp(prefix="autan-test-board-")) / "leaderboard.db")
torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# A throwaway PostgreSQL server for the tests that need one (store, /api, schemathesis). It comes
# from Debian's packages (installed by `scripts/setup.sh --test`); the cluster is created in a
# temporary directory, listens on 127.0.0.1 only, and is removed afterwards. Its binaries refuse
# to run as root, so they run as the `postgres` user when the tests are root.


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run scripts/setup.sh --test")
    return found


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_url():
    directory = tempfile.mkdtemp(prefix="autan-pg-")
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = os.path.join(directory, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", data, "-U", "autan", "--auth=trust"]), check=True, capture_output=True
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -k {directory}"
    subprocess.run(
        _as_postgres([_pg_bin("pg_ctl"), "-D", data, "-o", options, "-w", "start", "-l", f"{directory}/log"]),
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    url = f"postgresql+psycopg://autan@127.0.0.1:{port}/postgres"
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    yield url
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"]), capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """Which of the native kernels' instruction-set tiers this run tested and which it could not
    (the CPU lacks them): a tier not run is never counted as passed."""
    from autan import native

    module = native.module()
    if module is None:
        terminalreporter.write_line(f"native kernel tiers: none run ({native.describe()})")
        return
    best, ran = module.isa(), []
    for tier in module.isas():
        if module.set_isa(tier):
            ran.append(tier)
    module.set_isa(best)
    lacking = [tier for tier in module.isas() if tier not in ran]
    terminalreporter.write_line(
        f"native kernel tiers this CPU runs (tested where tests/model ran): {', '.join(ran)}; "
        f"not run, this CPU lacks them: {', '.join(lacking) or 'none'}"
    )
