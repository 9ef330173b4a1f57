"""PostgreSQL goes away under a running ``ansflow serve``: 503 JSON meanwhile, 2xx after.

The server is a real ``ansflow serve`` process on its own throwaway
PostgreSQL, which the test stops and starts again (same data, same port)
while the service keeps running. Which exceptions count as an outage is
table-tested on real exceptions from the drivers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from tortoise import connections
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError

from storage.db import close_db, open_db
from storage.models import CICDTool
from storage.outage import is_database_outage
from tests.api_support import ADMIN, SECRET, bearer, write_standard
from tests.helpers import eventually
from tests.pg_server import ThrowawayPostgres
from tests.test_crash_restart import Served, Servers, logs, servers

E = "/api/v1/cicd/executions/"
UNAVAILABLE = {"error": "database unavailable", "detail": "try again shortly"}


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL of this test alone: stopping it disturbs no other test.

    Durable, as in production: an immediate stop is a crash, and what was
    committed before it must still be there after it.
    """
    if not ThrowawayPostgres.available():
        pytest.skip("PostgreSQL binaries not found")
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    with ThrowawayPostgres(durable) as server:
        yield server


async def answer(group: Servers, served: Served, method: str, path: str, **kw: Any) -> Any:
    headers = bearer(ADMIN) if path.startswith("/api/") else {}
    async with group.http.request(method, served.url + path, headers=headers, **kw) as reply:
        body = await reply.json() if reply.content_type == "application/json" else None
        return reply.status, body, reply.headers.get("Retry-After")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_rest_and_healthz_answer_503_while_postgres_is_down_then_recover(
    own_postgres: ThrowawayPostgres, pipelines_dir: Path, tmp_path: Path, mode: str
) -> None:
    write_standard(pipelines_dir)
    url = own_postgres.create_database("outage")
    env = {
        "ANSFLOW_DATABASE_URL": url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        "ANSFLOW_JWT_SECRET": SECRET,
        "ANSFLOW_ADMINS": ADMIN,
    }
    async with servers(tmp_path, env) as group:
        served = await group.start()
        status, created, _ = await answer(group, served, "POST", E, json={"pipeline": "simple"})
        assert status == 201, created
        run_id = created["id"]
        await eventually(
            lambda: answer(group, served, "GET", f"{E}{run_id}/"),
            lambda a: a[1]["status"] == "success",
        )
        database_routes = [
            ("GET", "/healthz", {}),
            ("GET", E, {}),
            ("GET", f"{E}{run_id}/", {}),
            ("GET", f"{E}{run_id}/logs/", {}),
            ("POST", E, {"json": {"pipeline": "simple"}}),
            ("POST", E, {"json": {"pipeline": "simple"}, "headers": {"Idempotency-Key": "k"}}),
            ("POST", f"{E}{run_id}/cancel/", {}),
            ("POST", f"{E}{run_id}/approve/", {}),
            ("POST", f"{E}{run_id}/reject/", {"json": {"comment": "no"}}),
            ("GET", f"/api/v1/ws/executions/{run_id}/", {}),
            ("GET", "/api/v1/cicd/tools/", {}),
            ("PATCH", "/api/v1/cicd/tools/1/", {"json": {"status": "inactive"}}),
        ]

        own_postgres.halt(mode)
        for _ in range(2):  # the first call meets broken pooled connections, the next none
            for method, path, kw in database_routes:
                headers = {**(bearer(ADMIN) if path.startswith("/api/") else {})}
                headers.update(kw.get("headers", {}))
                sent = {k: v for k, v in kw.items() if k != "headers"}
                async with group.http.request(
                    method, served.url + path, headers=headers, **sent
                ) as reply:
                    body = await reply.json()
                    assert reply.status == 503, (method, path, reply.status, body, logs(served))
                    assert {k: body[k] for k in UNAVAILABLE} == UNAVAILABLE, body
                    assert reply.headers["Retry-After"] == "5"
        # A WebSocket refused at the handshake, or closed as "try again later" once open.
        for path in [f"/api/v1/ws/executions/{run_id}/", "/api/v1/ws/executions/"]:
            try:
                async with group.http.ws_connect(served.url + path, headers=bearer(ADMIN)) as ws:
                    message = await ws.receive(timeout=10)
                    assert message.type == aiohttp.WSMsgType.CLOSE, (path, message)
                    assert message.data == aiohttp.WSCloseCode.TRY_AGAIN_LATER, message
                    assert message.extra == "try again shortly"
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503, (path, exc)
        # The pipelines list names each pipeline's stored id: it waits for the database too.
        status, listing, _ = await answer(group, served, "GET", "/api/v1/pipelines/")
        assert status == 503 and listing["error"] == "database unavailable"

        await asyncio.to_thread(own_postgres.resume)
        # The same process, not restarted: its pool reconnects by itself.
        await eventually(
            lambda: answer(group, served, "GET", "/healthz"),
            lambda a: a[0] == 200,
            timeout=30,
        )
        status, page, _ = await answer(group, served, "GET", E)
        assert status == 200 and page["count"] == 1
        status, again, _ = await answer(group, served, "POST", E, json={"pipeline": "simple"})
        assert status == 201, again
        done = await eventually(
            lambda: answer(group, served, "GET", f"{E}{again['id']}/"),
            lambda a: a[1]["status"] == "success",
        )
        assert done[1]["steps"][0]["log_tail"] == "building 1.0 for staging"
        assert served.process.returncode is None
        text = served.log.read_text(errors="replace")
        assert "API bug" not in text, text[-3000:]


# -- which exceptions are an outage (real ones, from the drivers) ------------------


async def _raised(work: Any) -> BaseException:
    try:
        await work
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


@pytest.mark.postgres
async def test_postgres_errors_are_classified(pg_server: ThrowawayPostgres) -> None:
    url = await pg_server.acreate_database("classify_errors")
    await open_db(url)
    try:
        conn = connections.get("default")
        await CICDTool.create(name="one", url="http://x")
        duplicate = await _raised(CICDTool.create(name="one", url="http://x"))
        assert isinstance(duplicate, IntegrityError)
        assert not is_database_outage(duplicate)
        syntax = await _raised(conn.execute_query("SELEC 1"))
        assert not is_database_outage(syntax)
        too_big = await _raised(conn.execute_query("SELECT $1::int", [2**40]))
        assert not is_database_outage(too_big)
        nul = await _raised(conn.execute_query("SELECT $1::text", ["a\x00b"]))
        assert not is_database_outage(nul)
        killed = await _raised(conn.execute_query("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert is_database_outage(killed), repr(killed)
        # The pool replaced the terminated connection by itself.
        assert (await conn.execute_query("SELECT 1"))[0] == 1
    finally:
        await close_db()
        await pg_server.adrop_database("classify_errors")

    refused = await _raised(asyncpg.connect(host="127.0.0.1", port=1, user="x", timeout=5))
    assert isinstance(refused, OSError)
    assert is_database_outage(refused)


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (DBConnectionError("cannot connect"), True),
        (OperationalError("database is locked"), False),  # no cause: not the driver's
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("unable to open database file"), True),
        (sqlite3.OperationalError("no such table: run"), False),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (ConnectionRefusedError(111, "refused"), False),  # raised by our own code
        (TimeoutError(), False),
        (ValueError("bad"), False),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate"), False),
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (asyncpg.exceptions.InterfaceError("another operation is in progress"), False),
    ],
)
def test_outage_table(exc: BaseException, outage: bool) -> None:
    assert is_database_outage(exc) is outage


def test_outage_found_through_the_cause_chain() -> None:
    try:
        try:
            raise sqlite3.OperationalError("unable to open database file")
        except sqlite3.OperationalError as inner:
            raise OperationalError(inner) from inner
    except OperationalError as outer:
        assert is_database_outage(outer)
    wrapped = IntegrityError("dup")
    wrapped.__cause__ = asyncpg.exceptions.AdminShutdownError("x")
    assert not is_database_outage(wrapped)  # a constraint violation is never an outage


def test_aiohttp_is_not_a_driver() -> None:
    error = aiohttp.ClientConnectionError("jenkins down")
    assert not is_database_outage(error)
