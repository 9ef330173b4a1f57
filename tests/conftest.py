"""Fixtures: databases (SQLite and a throwaway PostgreSQL), pipelines folders."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.db import close_db, open_db
from tests.fakes.slack import FakeSlack
from tests.pg_server import ThrowawayPostgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayPostgres]:
    if not ThrowawayPostgres.available():
        if os.environ.get("ANSFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL 15 binaries not found but ANSFLOW_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL binaries not found")
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def pg_url(pg_server: ThrowawayPostgres) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await pg_server.acreate_database(name)
    yield url
    await pg_server.adrop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'ansflow.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ansflow.db'}"
        return
    server: ThrowawayPostgres = request.getfixturevalue("pg_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await server.acreate_database(name)
    yield url
    await server.adrop_database(name)


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[str]:
    """An open, migrated SQLite database for tests that use storage directly."""
    await open_db(sqlite_url)
    yield sqlite_url
    await close_db()


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    return folder


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    """A fresh fake Slack Web API on 127.0.0.1 (tests/fakes/slack.py)."""
    async with FakeSlack() as server:
        yield server
