"""A database for each store test: SQLite in a temporary file, and a throwaway PostgreSQL server.

PostgreSQL comes from Debian's packages (installed by `scripts/setup.sh --test`); the cluster is
created in a temporary directory, listens on 127.0.0.1 only, and is removed afterwards. Its
binaries refuse to run as root, so they run as the `postgres` user when the tests are root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


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


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    from sqlalchemy import text

    from autan.store.db import Store

    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'autan.db'}")
        return
    url = request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    with store.engine.begin() as connection:  # a clean database for the next test
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    store.engine.dispose()
