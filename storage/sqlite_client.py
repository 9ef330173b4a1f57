"""Tortoise's SQLite client, with a write transaction's statements run on the loop's thread.

aiosqlite runs every call in its own thread: a hand-off there and back costs
about 0.2 ms of thread wake-ups on a busy machine, for a few microseconds of
SQLite work. A step boundary (BEGIN, the run and its steps, two
compare-and-sets, COMMIT) paid six of them.

Here a transaction begins ``IMMEDIATE``, together with its first statement, in
aiosqlite's thread: that is where a wait for another process's write lock
(the busy timeout) can happen. Once the transaction holds the write lock, its
statements cannot wait for a lock, and with ``synchronous=NORMAL`` nothing
but a checkpoint at COMMIT waits for the disk: they run inline, on the
loop's thread. COMMIT and ROLLBACK go back to the thread. A transaction costs
two hand-offs, however many statements it holds.

Outside transactions nothing changes: each statement is a call in the thread.
Everything else is Tortoise's own client (``tortoise.backends.sqlite``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from tortoise.backends.base.client import NestedTransactionContext, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
    translate_exceptions,
)
from tortoise.exceptions import TransactionManagementError

T = TypeVar("T")


class InlineSqliteClient(SqliteClient):
    async def create_connection(self, with_db: bool) -> None:
        if self._connection:
            return
        # check_same_thread=False: a transaction's statements run on the loop's
        # thread; Tortoise's lock keeps one user of the connection at a time.
        self._connection = await aiosqlite.connect(
            self.filename, isolation_level=None, check_same_thread=False
        )
        self._connection._conn.row_factory = sqlite3.Row
        for pragma, value in self.pragmas.items():
            cursor = await self._connection.execute(f"PRAGMA {pragma}={value}")
            await cursor.close()
        await self._post_connect()

    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(InlineTransaction(self), self._lock)


class InlineTransaction(SqliteTransactionWrapper):
    """A transaction whose BEGIN waits for its first statement, and whose statements run inline."""

    _begun = False

    async def begin(self) -> None:
        self._begun = False  # BEGIN IMMEDIATE goes with the first statement

    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(_InlineSavepoint(self))

    async def _run(self, work: Callable[[sqlite3.Connection], T], inline: bool = True) -> T:
        raw = self._connection._conn
        if self._begun:
            if inline:
                return work(raw)
            return await _in_thread(self._connection, lambda: work(raw))
        begun: list[bool] = []

        def begin_then_work() -> T:
            raw.execute("BEGIN IMMEDIATE")
            begun.append(True)
            return work(raw)

        try:
            # aiosqlite's own queue: the call runs in its thread, as all its calls do.
            return await _in_thread(self._connection, begin_then_work)
        finally:
            self._begun = bool(begun)

    @translate_exceptions
    async def execute_query(
        self, query: str, values: list[Any] | None = None
    ) -> tuple[int, Sequence[dict[str, Any]]]:
        query = query.replace("\x00", "'||CHAR(0)||'")
        self.log.debug("%s: %s", query, values)

        def work(raw: sqlite3.Connection) -> tuple[int, Sequence[dict[str, Any]]]:
            start = raw.total_changes
            rows = raw.execute(query, values or []).fetchall()
            return (raw.total_changes - start) or len(rows), rows

        return await self._run(work)

    @translate_exceptions
    async def execute_query_dict(
        self, query: str, values: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        query = query.replace("\x00", "'||CHAR(0)||'")
        self.log.debug("%s: %s", query, values)
        return await self._run(
            lambda raw: [dict(row) for row in raw.execute(query, values or []).fetchall()]
        )

    @translate_exceptions
    async def execute_insert(self, query: str, values: list[Any]) -> int:
        self.log.debug("%s: %s", query, values)

        def work(raw: sqlite3.Connection) -> int:
            raw.execute(query, values)
            return int(raw.execute("SELECT last_insert_rowid()").fetchone()[0])

        return await self._run(work)

    @translate_exceptions
    async def execute_many(self, query: str, values: list[list[Any]]) -> None:
        self.log.debug("%s: %s", query, values)
        await self._run(lambda raw: raw.executemany(query, values))

    @translate_exceptions
    async def execute_script(self, query: str) -> None:
        self.log.debug(query)
        # In the thread: a script may be long, and it commits what is open first.
        await self._run(lambda raw: raw.executescript(query), inline=False)

    async def commit(self) -> None:
        await self._end(self._connection.commit)

    async def rollback(self) -> None:
        await self._end(self._connection.rollback)

    async def _end(self, finish: Callable[[], Awaitable[None]]) -> None:
        """COMMIT or ROLLBACK, in the thread; nothing to end if nothing began."""
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        self._finalized = True
        if self._begun:
            await finish()


class _InlineSavepoint(InlineTransaction):
    """A transaction inside one: a savepoint, once the outer transaction has begun."""

    def __init__(self, outer: InlineTransaction) -> None:
        super().__init__(outer)
        self._outer = outer

    async def savepoint(self) -> None:
        await self._outer._run(lambda raw: None)
        self._begun = True
        await super().savepoint()


async def _in_thread(connection: aiosqlite.Connection, work: Callable[[], T]) -> T:
    """``work()`` in the connection's thread, queued behind its other calls (aiosqlite's own)."""
    result: T = await connection._execute(work)  # type: ignore[no-untyped-call]
    return result


client_class = InlineSqliteClient
