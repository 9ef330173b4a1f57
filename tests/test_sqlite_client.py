"""SQLite transactions run on the event loop's thread (storage/sqlite_client.py).

What a user relies on: a transaction commits whole or not at all (also inside
a savepoint); a wait for another process's write lock never stalls the
server's event loop; the WAL is still checkpointed, so it stays small; and a
transaction with the lock free costs no hand-off to the database thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from storage.db import close_db, open_db
from storage.models import CICDTool
from storage.sqlite_client import CHECKPOINT_EVERY, InlineSqliteClient


@pytest.fixture
async def sqlite_path(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "ansflow.db"
    await open_db(f"sqlite://{path}")
    yield path
    await close_db()


async def names() -> list[str]:
    return sorted(await CICDTool.all().values_list("name", flat=True))  # type: ignore[arg-type]


@contextmanager
def hand_offs() -> Iterator[list[Any]]:
    """Every call queued to aiosqlite's thread meanwhile (the library's queue, spied on)."""
    calls: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await original(self, fn, *args, **kwargs)

    aiosqlite.Connection._execute = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        aiosqlite.Connection._execute = original  # type: ignore[method-assign]


async def test_a_transaction_with_the_lock_free_costs_no_hand_off(sqlite_path: Path) -> None:
    with hand_offs() as calls:
        async with in_transaction() as conn:
            for i in range(5):
                await CICDTool.create(name=f"j{i}", url="http://127.0.0.1:1", using_db=conn)
            await conn.execute_query(
                'UPDATE "cicd_tool" SET "status"=? WHERE "name"=?', ["off", "j0"]
            )
    assert calls == []
    assert await names() == ["j0", "j1", "j2", "j3", "j4"]
    assert await CICDTool.get(name="j0").values_list("status", flat=True) == "off"


async def test_an_empty_transaction_does_not_reach_the_database(sqlite_path: Path) -> None:
    with hand_offs() as calls:
        async with in_transaction():
            pass
    assert calls == []


async def test_a_failing_transaction_stores_none_of_its_statements(sqlite_path: Path) -> None:
    await CICDTool.create(name="kept", url="http://127.0.0.1:1")
    with pytest.raises(IntegrityError):
        async with in_transaction() as conn:
            await CICDTool.create(name="new", url="http://127.0.0.1:1", using_db=conn)
            await CICDTool.create(name="kept", url="http://127.0.0.1:1", using_db=conn)
    assert await names() == ["kept"]
    # The connection is usable afterwards, in and out of transactions.
    async with in_transaction() as conn:
        await CICDTool.create(name="after", url="http://127.0.0.1:1", using_db=conn)
    assert await names() == ["after", "kept"]


async def test_a_savepoint_rolls_back_alone(sqlite_path: Path) -> None:
    async with in_transaction() as outer:
        await CICDTool.create(name="outer", url="http://127.0.0.1:1", using_db=outer)
        with pytest.raises(IntegrityError):
            async with in_transaction() as inner:
                await CICDTool.create(name="inner", url="http://127.0.0.1:1", using_db=inner)
                await CICDTool.create(name="outer", url="http://127.0.0.1:1", using_db=inner)
        await CICDTool.create(name="last", url="http://127.0.0.1:1", using_db=outer)
    assert await names() == ["last", "outer"]


async def test_a_savepoint_as_the_first_thing_still_opens_the_transaction(
    sqlite_path: Path,
) -> None:
    with pytest.raises(RuntimeError):
        async with in_transaction():
            async with in_transaction() as inner:
                await CICDTool.create(name="inner", url="http://127.0.0.1:1", using_db=inner)
            raise RuntimeError("the outer transaction fails after its savepoint was released")
    assert await names() == []


def hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    """Another process's writer, as SQLite sees it: its own connection holding the lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        other.execute("COMMIT")
    finally:
        other.close()


async def while_another_writer_holds_the_lock(
    path: Path, write: Callable[[], Awaitable[object]]
) -> tuple[float, int]:
    """``write()`` while another writer holds the lock for 0.6 s: how long it took,
    and how many 10 ms ticks the event loop made meanwhile."""
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(path, 0.6, locked))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        async with loop_ticks(0.01) as ticks:
            began = time.monotonic()
            await write()
            waited = time.monotonic() - began
    finally:
        holder.join(10)
    return waited, ticks[0]


@asynccontextmanager
async def loop_ticks(interval: float) -> AsyncIterator[list[int]]:
    """How many ``interval`` sleeps the event loop completed meanwhile (``[count]``)."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            ticks[0] += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        yield ticks
    finally:
        ticker.cancel()


async def test_waiting_for_another_writers_lock_leaves_the_event_loop_free(
    sqlite_path: Path,
) -> None:
    async def write() -> None:
        async with in_transaction() as conn:
            await CICDTool.create(name="waited", url="http://127.0.0.1:1", using_db=conn)

    waited, ticks = await while_another_writer_holds_the_lock(sqlite_path, write)
    assert waited >= 0.4  # it really waited for the other writer
    assert ticks >= 20  # and the loop went on meanwhile
    assert await names() == ["waited"]


async def test_the_wal_is_checkpointed_so_it_stays_small_under_constant_writes(
    sqlite_path: Path,
) -> None:
    wal = Path(f"{sqlite_path}-wal")
    client = connections.get("default")
    assert isinstance(client, InlineSqliteClient)
    sizes: list[int] = []

    async def transactions(count: int, first: int) -> None:
        for i in range(first, first + count):
            async with in_transaction() as conn:
                await CICDTool.create(
                    name=f"j{i}", url="http://127.0.0.1:1", token="x" * 400, using_db=conn
                )
            sizes.append(wal.stat().st_size)
            await asyncio.sleep(0)  # as a server does between requests

    with hand_offs() as calls:
        await transactions(CHECKPOINT_EVERY - 1, 0)
        one_round = wal.stat().st_size  # the WAL of CHECKPOINT_EVERY - 1 transactions
        # No pause: the checkpoints run while the transactions go on.
        await transactions(5 * CHECKPOINT_EVERY, CHECKPOINT_EVERY - 1)
    checkpointer = client.checkpointer
    assert checkpointer is not None
    await checkpointer.idle()
    assert calls == []  # checkpoints have a connection of their own, not aiosqlite's thread
    assert checkpointer.done >= 2
    # Without checkpoints the WAL would hold every transaction: six rounds by the end.
    assert max(sizes) < 3 * one_round
    assert len(await names()) == 6 * CHECKPOINT_EVERY - 1


async def test_statements_outside_transactions_cost_no_hand_off(sqlite_path: Path) -> None:
    with hand_offs() as calls:
        tool = await CICDTool.create(name="alone", url="http://127.0.0.1:1")
        await CICDTool.filter(id=tool.id).update(status="off")
        found = await CICDTool.filter(name="alone").values_list("status", flat=True)
    assert calls == []
    assert found == ["off"]
    # Committed: another connection (another process, as SQLite sees it) reads it.
    other = sqlite3.connect(sqlite_path)
    try:
        assert other.execute("SELECT status FROM cicd_tool").fetchall() == [("off",)]
    finally:
        other.close()


async def test_a_read_outside_a_transaction_does_not_wait_for_another_writer(
    sqlite_path: Path,
) -> None:
    await CICDTool.create(name="before", url="http://127.0.0.1:1")
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(sqlite_path, 1.0, locked))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        with hand_offs() as calls:
            began = time.monotonic()
            assert await names() == ["before"]
            took = time.monotonic() - began
        assert calls == []  # WAL readers wait for no writer
        assert took < 0.5  # the holder keeps its lock for a second
    finally:
        holder.join(10)


async def test_a_write_outside_a_transaction_waits_for_another_writer_in_the_thread(
    sqlite_path: Path,
) -> None:
    async def write() -> None:
        await CICDTool.create(name="waited", url="http://127.0.0.1:1")

    with hand_offs() as calls:
        waited, ticks = await while_another_writer_holds_the_lock(sqlite_path, write)
    assert waited >= 0.4  # it really waited for the other writer
    assert ticks >= 20  # and the loop went on meanwhile
    assert len(calls) == 1  # the wait was in the thread
    assert await names() == ["waited"]


async def test_a_long_statement_outside_a_transaction_moves_to_the_thread(
    sqlite_path: Path,
) -> None:
    """A scan that outlasts the loop's budget is undone and run in the thread, whole."""
    long_scan = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000)"
        " SELECT count(*) AS n, max(x) AS top FROM c"
    )
    async with loop_ticks(0.005) as ticks:
        with hand_offs() as calls:
            began = time.monotonic()
            _, rows = await connections.get("default").execute_query(long_scan)
            took = time.monotonic() - began
    assert (rows[0]["n"], rows[0]["top"]) == (2_000_000, 2_000_000)  # the whole answer
    assert len(calls) == 1  # in the thread, once
    assert took > 0.05  # long enough to matter (a tick is 5 ms)
    assert ticks[0] >= 3  # the loop went on meanwhile

    # A write that outlasts it is undone inline and done once, in the thread.
    tool = await CICDTool.create(name="counted", url="http://127.0.0.1:1")
    slow_write = (
        "UPDATE cicd_tool SET kind = (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
        " SELECT x + 1 FROM c WHERE x < 2000000) SELECT 'k' || max(x) FROM c),"
        " username = username || 'x' WHERE id = ?"
    )
    with hand_offs() as calls:
        count, _ = await connections.get("default").execute_query(slow_write, [tool.id])
    assert count == 1 and len(calls) == 1
    stored = await CICDTool.get(id=tool.id)
    assert (stored.kind, stored.username) == ("k2000000", "x")  # applied once, not twice


async def test_a_pragma_outside_a_transaction_takes_effect(sqlite_path: Path) -> None:
    client = connections.get("default")
    await client.execute_query("PRAGMA busy_timeout=1234")
    _, rows = await client.execute_query("PRAGMA busy_timeout")
    assert int(rows[0][0]) == 1234


async def test_a_lock_held_past_the_busy_timeout_is_a_clear_error(sqlite_path: Path) -> None:
    await connections.get("default").execute_query("PRAGMA busy_timeout=200")
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(sqlite_path, 1.0, locked))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        with pytest.raises(OperationalError, match="locked"):
            async with in_transaction() as conn:
                await CICDTool.create(name="refused", url="http://127.0.0.1:1", using_db=conn)
    finally:
        holder.join(10)
    async with in_transaction() as conn:
        await CICDTool.create(name="later", url="http://127.0.0.1:1", using_db=conn)
    assert await names() == ["later"]


async def test_with_synchronous_full_commit_waits_in_the_thread(tmp_path: Path) -> None:
    await open_db(f"sqlite://{tmp_path / 'full.db'}?synchronous=FULL")
    try:
        with hand_offs() as calls:
            async with in_transaction() as conn:
                await CICDTool.create(name="durable", url="http://127.0.0.1:1", using_db=conn)
        _, rows = await connections.get("default").execute_query("PRAGMA wal_autocheckpoint")
        assert len(calls) == 1  # COMMIT fsyncs under FULL: not on the loop's thread
        assert int(rows[0][0]) > 0  # and SQLite checkpoints as it always does
        assert await names() == ["durable"]
    finally:
        await close_db()


async def test_a_transaction_left_open_is_rolled_back_before_the_next_begins(
    sqlite_path: Path,
) -> None:
    client = connections.get("default")
    assert isinstance(client, InlineSqliteClient)
    assert client._connection is not None
    raw = client._connection._conn
    await CICDTool.create(name="kept", url="http://127.0.0.1:1")
    # What a COMMIT that failed leaves behind: an open transaction with a write in it.
    raw.execute("BEGIN")
    raw.execute("UPDATE cicd_tool SET name = 'changed by the transaction left open'")
    async with in_transaction() as conn:
        await CICDTool.create(name="next", url="http://127.0.0.1:1", using_db=conn)
    assert not raw.in_transaction
    assert await names() == ["kept", "next"]
