"""A database for each store test: SQLite in a temporary file, and the throwaway PostgreSQL server
of the root conftest (`postgres_url`)."""

from __future__ import annotations

import pytest


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
