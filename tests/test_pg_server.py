"""Tests for tests/pg_server.py: a throwaway PostgreSQL really starts and stops.

Skipped when the PostgreSQL server programs are absent, unless
ANSFLOW_REQUIRE_POSTGRES=1 (as in CI), where absence is a failure.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from typing import Any

import pytest

from tests.pg_server import PostgresStartError, ThrowawayPostgres

pytestmark = pytest.mark.postgres

# asyncpg ships no type information; import it as Any.
asyncpg: Any = importlib.import_module("asyncpg")


def _require_postgres() -> None:
    if ThrowawayPostgres.available():
        return
    reason = (
        "PostgreSQL server programs (initdb, pg_ctl, postgres, psql) not found on PATH, "
        "via pg_config or in /usr/lib/postgresql/*/bin"
    )
    if os.environ.get("ANSFLOW_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, but ANSFLOW_REQUIRE_POSTGRES=1", pytrace=False)
    pytest.skip(reason)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.asyncio
async def test_start_create_connect_drop_stop() -> None:
    _require_postgres()
    pg = ThrowawayPostgres()
    t0 = time.monotonic()
    pg.start()
    try:
        started_in = time.monotonic() - t0
        assert pg.running
        port = pg.port
        tmpdir = pg.tmpdir
        assert tmpdir.is_dir()
        assert pg.url() == f"postgres://postgres@127.0.0.1:{port}/postgres"

        # sync (psql) create
        url = pg.create_database("ansflow_t1")
        assert url == f"postgres://postgres@127.0.0.1:{port}/ansflow_t1"
        conn = await asyncpg.connect(dsn=pg.dsn("ansflow_t1"), timeout=10)
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("select current_database()") == "ansflow_t1"
            assert await conn.fetchval("show fsync") == "off"
            assert int(await conn.fetchval("show max_connections")) == 200
        finally:
            await conn.close(timeout=10)

        # async (asyncpg) create; drop while a session is still open (FORCE)
        url2 = await pg.acreate_database("Ansflow T2")
        assert url2.endswith("/Ansflow T2")
        conn2 = await asyncpg.connect(dsn=pg.dsn("Ansflow T2"), timeout=10)
        try:
            assert await conn2.fetchval("select 1") == 1
            await pg.adrop_database("Ansflow T2")
        finally:
            await conn2.close(timeout=10)

        pg.drop_database("ansflow_t1")
        pg.drop_database("ansflow_t1")  # IF EXISTS: no error the second time
        names = pg.psql("select datname from pg_database order by 1").split()
        assert "ansflow_t1" not in names
        assert "Ansflow T2" not in names
        assert "postgres" in names
    finally:
        t1 = time.monotonic()
        pg.stop()
        stopped_in = time.monotonic() - t1

    print(f"\nthrowaway postgres: start {started_in:.2f}s, stop {stopped_in:.2f}s")
    assert not pg.running
    assert not tmpdir.exists()
    assert not _port_open(port)
    pg.stop()  # idempotent


def test_context_manager_cleans_up() -> None:
    _require_postgres()
    with ThrowawayPostgres() as pg:
        assert pg.psql("select 1").strip() == "1"
        tmpdir = pg.tmpdir
    assert not tmpdir.exists()
    with pytest.raises(RuntimeError):
        pg.url()


def test_start_failure_reports_log_tail() -> None:
    _require_postgres()
    pg = ThrowawayPostgres({"shared_buffers": "'not-a-size'"})
    with pytest.raises(PostgresStartError) as info:
        pg.start()
    message = str(info.value)
    assert "server log tail" in message
    assert "shared_buffers" in message
    assert not pg.running
    with pytest.raises(RuntimeError):
        _ = pg.tmpdir  # cleaned up after the failed start
