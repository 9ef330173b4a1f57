"""Tortoise's SQLite client, with transactions run on the event loop's thread.

aiosqlite runs every call in its own thread: a hand-off there and back costs
a few tenths of a millisecond of thread wake-ups on a busy machine, for a few
microseconds of SQLite work. A step boundary (BEGIN, the run and its steps,
two compare-and-sets, COMMIT) paid six of them.

Here a transaction runs on the loop's thread, from BEGIN to COMMIT, as long
as nothing in it can wait:

* ``BEGIN IMMEDIATE`` is tried with no busy timeout. If another process holds
  the write lock, the transaction begins in aiosqlite's thread instead, where
  the wait (the busy timeout) belongs.
* Holding the write lock, its statements cannot wait for a lock, and with
  ``synchronous=NORMAL`` neither they nor COMMIT wait for the disk: in WAL
  mode only a checkpoint does. So this connection does not checkpoint at
  COMMIT; every ``CHECKPOINT_EVERY`` commits a :class:`Checkpointer` does,
  on a connection of its own in a worker thread, while the loop goes on.
* A script goes to the thread (it may be long, and it commits what is open).
* The connection's locks (one user at a time; writers held off during a
  checkpoint) are :class:`~storage.barging_lock.BargingLock`: a transaction
  that finds them free takes them, instead of queueing behind waiters that
  have been woken but have not yet run, and a release wakes every waiter.

A statement outside a transaction (a read, or a write that commits alone)
runs on the loop's thread too, the same way: tried with no busy timeout, and
sent to aiosqlite's thread only if another process holds a lock it needs, or
if it runs longer than ``INLINE_BUDGET`` (it is interrupted, which undoes it,
and run again in the thread: a scan of a big table does not stall the loop).
A read in WAL mode waits for nothing else, and a write commits without
waiting for the disk, as above.

Everything else is Tortoise's own client (``tortoise.backends.sqlite``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from tortoise.backends.base.client import (
    NestedTransactionContext,
    TransactionalDBClient,
    TransactionContext,
)
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
    translate_exceptions,
)
from tortoise.exceptions import TransactionManagementError

from storage.barging_lock import BargingLock

log = logging.getLogger(__name__)

# Commits between two checkpoints: a few megabytes of WAL at most.
CHECKPOINT_EVERY = 200
# How long a statement outside a transaction may run on the loop's thread before it
# is undone and run again in aiosqlite's thread; checked every PROGRESS_EVERY steps
# of SQLite's virtual machine (a short statement never reaches a check).
INLINE_BUDGET = 0.002
PROGRESS_EVERY = 2000

T = TypeVar("T")


class _InlineStatements:
    """Statements as functions of the raw connection, run by the class's ``_statement``."""

    log: logging.Logger

    async def _statement(self, work: Callable[[sqlite3.Connection], T], query: str) -> T:
        raise NotImplementedError

    @translate_exceptions
    async def execute_query(
        self, query: str, values: list[Any] | None = None
    ) -> tuple[int, Sequence[dict[str, Any]]]:
        query = query.replace("\x00", "'||CHAR(0)||'")
        self.log.debug("%s: %s", query, values)
        return await self._statement(_query_work(query, values), query)

    @translate_exceptions
    async def execute_query_dict(
        self, query: str, values: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        query = query.replace("\x00", "'||CHAR(0)||'")
        self.log.debug("%s: %s", query, values)
        return await self._statement(_dict_work(query, values), query)

    @translate_exceptions
    async def execute_insert(self, query: str, values: list[Any]) -> int:
        self.log.debug("%s: %s", query, values)
        return await self._statement(_insert_work(query, values), query)


class InlineSqliteClient(_InlineStatements, SqliteClient):
    # WAL with synchronous=NORMAL: COMMIT does not wait for the disk, and runs inline.
    _inline_commit = False
    _commits = 0
    checkpointer: Checkpointer | None = None
    _writes: asyncio.Lock | None = None

    def __init__(self, file_path: str, **kwargs: Any) -> None:
        super().__init__(file_path, **kwargs)
        self._lock = BargingLock()  # see storage/barging_lock.py

    async def create_connection(self, with_db: bool) -> None:
        if self._connection:
            return
        # check_same_thread=False: a transaction's statements run on the loop's
        # thread; Tortoise's lock keeps one user of the connection at a time.
        self._connection = await aiosqlite.connect(
            self.filename, isolation_level=None, check_same_thread=False
        )
        raw = self._connection._conn
        raw.row_factory = sqlite3.Row
        for pragma, value in self.pragmas.items():
            cursor = await self._connection.execute(f"PRAGMA {pragma}={value}")
            await cursor.close()

        def wal_and_normal() -> bool:
            mode = str(raw.execute("PRAGMA journal_mode").fetchall()[0][0]).lower()
            synchronous = int(raw.execute("PRAGMA synchronous").fetchall()[0][0])
            if mode != "wal" or synchronous > 1:
                return False  # COMMIT waits for the disk (FULL, or a rollback journal)
            raw.execute("PRAGMA wal_autocheckpoint=0").fetchall()  # see after_commit
            return True

        self._inline_commit = await _in_thread(self._connection, wal_and_normal)
        await self._post_connect()

    def _in_transaction(self) -> TransactionContext:
        return _Gated(SqliteTransactionContext(InlineTransaction(self), self._lock), self.writes)

    async def _statement(self, work: Callable[[sqlite3.Connection], T], query: str) -> T:
        """``work`` as a statement of its own: on this thread unless it would wait.

        A PRAGMA goes to the thread as before: it may set the busy timeout that
        trying at once sets aside.
        """
        async with self.acquire_connection() as connection:
            raw = connection._conn
            pragma = query.lstrip()[:6].upper() == "PRAGMA"
            if self._inline_commit and not pragma and not raw.in_transaction:
                done = _at_once(raw, work)
                if done is not _WOULD_WAIT:
                    return done  # type: ignore[return-value]
            return await _in_thread(connection, lambda: work(raw))

    @property
    def writes(self) -> asyncio.Lock:
        """Held by each transaction, and by a checkpoint while it holds writers off."""
        if self._writes is None:
            self._writes = BargingLock()
        return self._writes

    def after_commit(self) -> None:
        """Every ``CHECKPOINT_EVERY`` commits, a checkpoint starts beside the server."""
        self._commits += 1
        if not self._inline_commit or self._commits < CHECKPOINT_EVERY:
            return
        self._commits = 0
        if self.checkpointer is None:
            self.checkpointer = Checkpointer(self.filename, self.writes)
        self.checkpointer.start()

    async def close(self) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.close()
            self.checkpointer = None
        await super().close()


class Checkpointer:
    """Checkpoints of a WAL database on a connection of their own, in a worker thread.

    A checkpoint copies the WAL into the database file and fsyncs it: many
    milliseconds. First a PASSIVE one copies what it can while the server
    reads and writes on; then, with ``writes`` held (new transactions wait
    for it on the loop, reads go on), a RESTART one copies the few frames
    written meanwhile and has the next writer start the WAL afresh, so that
    it stays a few megabytes under constant load. RESTART also waits (at most
    ``WAIT``) for other processes' readers and writers; if it cannot have
    them out of the way in time it copies what it can, and the next one tries
    again. One at a time.
    """

    WAIT = 1.0

    def __init__(self, filename: str, writes: asyncio.Lock) -> None:
        self.filename = filename
        self.done = 0
        self._writes = writes
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._checkpoint(), name="sqlite-checkpoint")

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_here, "PASSIVE")
            async with self._writes:
                await asyncio.to_thread(self._checkpoint_here, "RESTART")
            self.done += 1
        except sqlite3.Error as exc:  # the next one tries again
            log.warning("SQLite checkpoint failed: %s", exc)

    def _checkpoint_here(self, mode: str) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.filename, isolation_level=None, check_same_thread=False, timeout=self.WAIT
            )
        self._connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    async def idle(self) -> None:
        """Once the checkpoint under way (if any) has ended."""
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

    async def close(self) -> None:
        await self.idle()
        if self._connection is not None:
            await asyncio.to_thread(self._connection.close)
            self._connection = None


class InlineTransaction(_InlineStatements, SqliteTransactionWrapper):
    """A transaction run on the loop's thread; BEGIN waits for its first statement."""

    _begun = False

    def __init__(self, connection: SqliteClient) -> None:
        super().__init__(connection)
        client = connection
        while isinstance(client, InlineTransaction):
            client = client._client
        assert isinstance(client, InlineSqliteClient)
        self._client: InlineSqliteClient = client

    async def begin(self) -> None:
        self._begun = False  # BEGIN IMMEDIATE comes with the first statement

    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(_InlineSavepoint(self))

    async def _run(self, work: Callable[[sqlite3.Connection], T], inline: bool = True) -> T:
        raw = self._connection._conn
        if not self._begun:
            if not _begin_at_once(raw):
                return await self._begin_in_thread(raw, work)
            self._begun = True
        if inline:
            return work(raw)
        return await _in_thread(self._connection, lambda: work(raw))

    async def _begin_in_thread(
        self, raw: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Another writer holds the lock: wait for it in the thread, then do ``work`` there.

        If the caller is cancelled meanwhile, the thread's call still ends (within the
        busy timeout) and what it began is rolled back before the cancel goes on.
        """
        begun: list[bool] = []

        def begin_then_work() -> T:
            _end_leftover(raw)
            raw.execute("BEGIN IMMEDIATE")
            begun.append(True)
            return work(raw)

        call = asyncio.ensure_future(_in_thread(self._connection, begin_then_work))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            await asyncio.gather(call, return_exceptions=True)
            if begun:
                _end_leftover(raw)
            begun.clear()
            raise
        finally:
            self._begun = bool(begun)

    async def _statement(self, work: Callable[[sqlite3.Connection], T], query: str) -> T:
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
        await self._end("COMMIT")
        if self._begun:
            self._client.after_commit()

    async def rollback(self) -> None:
        await self._end("ROLLBACK")

    async def _end(self, statement: str) -> None:
        """COMMIT or ROLLBACK: inline in WAL with synchronous=NORMAL (neither waits for
        the disk; checkpoints happen in :meth:`InlineSqliteClient.after_commit`)."""
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        self._finalized = True
        if not self._begun:
            return
        raw = self._connection._conn
        if self._client._inline_commit:
            raw.execute(statement)
        else:
            await _in_thread(self._connection, lambda: raw.execute(statement).fetchall())


class _InlineSavepoint(InlineTransaction):
    """A transaction inside one: a savepoint, once the outer transaction has begun."""

    def __init__(self, outer: InlineTransaction) -> None:
        super().__init__(outer)
        self._outer = outer

    async def savepoint(self) -> None:
        await self._outer._run(lambda raw: None)
        self._begun = True
        await super().savepoint()


class _Gated(TransactionContext):
    """A transaction that first takes ``gate`` (so a checkpoint can hold writers off)."""

    def __init__(self, inner: TransactionContext, gate: asyncio.Lock) -> None:
        self.inner = inner
        self.gate = gate

    async def __aenter__(self) -> TransactionalDBClient:
        await self.gate.acquire()
        try:
            return await self.inner.__aenter__()
        except BaseException:
            self.gate.release()
            raise

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            await self.inner.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            self.gate.release()


def _end_leftover(raw: sqlite3.Connection) -> None:
    """Roll back a transaction left open on the connection (a COMMIT that failed, say):
    the next one must not run inside it, or commit what its owner saw fail."""
    if raw.in_transaction:
        raw.execute("ROLLBACK")


def _query_work(
    query: str, values: list[Any] | None
) -> Callable[[sqlite3.Connection], tuple[int, Sequence[dict[str, Any]]]]:
    def work(raw: sqlite3.Connection) -> tuple[int, Sequence[dict[str, Any]]]:
        cursor = raw.execute(query, values or [])
        rows = cursor.fetchall()
        # The statement's own rows (sqlite3_changes): unlike the connection's
        # total_changes, not the rows a trigger changed besides.
        changed = cursor.rowcount
        return (changed if changed > 0 else len(rows)), rows

    return work


def _dict_work(
    query: str, values: list[Any] | None
) -> Callable[[sqlite3.Connection], list[dict[str, Any]]]:
    return lambda raw: [dict(row) for row in raw.execute(query, values or []).fetchall()]


def _insert_work(query: str, values: list[Any]) -> Callable[[sqlite3.Connection], int]:
    def work(raw: sqlite3.Connection) -> int:
        raw.execute(query, values).fetchall()
        return int(raw.execute("SELECT last_insert_rowid()").fetchall()[0][0])

    return work


_WOULD_WAIT = object()


def _code_of(exc: sqlite3.OperationalError) -> int | None:
    """The primary result code (the extended code's low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_lock_taken(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included (e.g. BUSY_RECOVERY)."""
    return _code_of(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _at_once(raw: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T | object:
    """``work()`` (statements outside a transaction) on this thread, with no busy
    timeout and at most ``INLINE_BUDGET`` of the loop's time; ``_WOULD_WAIT`` if a
    lock was taken or the budget ran out.

    Either way the statement was undone whole (a statement that finds a lock taken
    fails before it reads or writes anything; an interrupted one outside a
    transaction is rolled back), so it can be done again where waiting is allowed:
    a scan of a big table moves to the thread instead of stalling the server.
    """
    busy_timeout_ms = int(raw.execute("PRAGMA busy_timeout").fetchall()[0][0])
    raw.execute("PRAGMA busy_timeout=0")
    deadline = time.monotonic() + INLINE_BUDGET

    def over_budget() -> int:
        return 1 if time.monotonic() > deadline else 0

    raw.set_progress_handler(over_budget, PROGRESS_EVERY)
    try:
        return work(raw)
    except sqlite3.OperationalError as exc:
        if _is_lock_taken(exc) or _code_of(exc) == sqlite3.SQLITE_INTERRUPT:
            _end_leftover(raw)
            return _WOULD_WAIT
        raise
    finally:
        raw.set_progress_handler(None, 0)
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def _begin_at_once(raw: sqlite3.Connection) -> bool:
    """``BEGIN IMMEDIATE`` on this thread if the write lock is free now; False if it is not."""
    _end_leftover(raw)
    busy_timeout_ms = int(raw.execute("PRAGMA busy_timeout").fetchall()[0][0])
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if _is_lock_taken(exc):
            return False
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return True


async def _in_thread(connection: aiosqlite.Connection, work: Callable[[], T]) -> T:
    """``work()`` in the connection's thread, queued behind its other calls (aiosqlite's own)."""
    result: T = await connection._execute(work)  # type: ignore[no-untyped-call]
    return result


client_class = InlineSqliteClient
