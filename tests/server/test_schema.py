"""schemathesis throws generated requests at every operation in /openapi.json: no answer may be a
5xx. Once against the server on SQLite (every operation), once against one on PostgreSQL (the
chat app's /api operations, where the database is what differs)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import API_KEY, Live

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def schemathesis(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *(str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "not_a_server_error"),
            *("-n", "15", "--request-timeout", "60", "--generation-deterministic"),
            *("-H", f"Authorization: Bearer {API_KEY}", *extra),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_no_generated_request_gets_a_server_error(server):
    result = schemathesis(server)
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "generated" in result.stdout


@pytest.fixture
def on_postgres(postgres_url):
    from sqlalchemy import text

    from autan.http.auth import Policy
    from autan.server.app import create_app
    from autan.store.db import Store

    store = Store(postgres_url)
    server = Live(create_app([], policy=Policy(api_keys=[API_KEY]), store=store))
    yield server.url
    server.close()
    with store.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    store.engine.dispose()


def test_no_generated_api_request_gets_a_server_error_on_postgresql(on_postgres):
    result = schemathesis(on_postgres, "--include-path-regex", "^/api/")
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "generated" in result.stdout
