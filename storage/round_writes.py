"""A round's compare-and-sets and notices, sent together as the round ends.

A step boundary used to send PostgreSQL one statement per compare-and-set and
one for the replicas' notice, each a round trip (about 0.3 ms here, more than
the statement's own work). Queued here instead, they go as one statement:
each compare-and-set a data-modifying CTE that reports its row count, the
notices ``pg_notify`` calls in its SELECT. SQLite, whose statements cost
microseconds, gets them one by one, in order.

A round wins whole or not at all: :meth:`RoundWrites.send` raises
:class:`ChangesLost` if any change matched no row, inside the round's
transaction, which then rolls back. A row changed twice in one round is sent
in two statements (PostgreSQL leaves undefined which of two changes of one
row in a statement wins).

A round with nothing else to commit with its changes (no outbox rows: no
Slack) needs no transaction of its own on PostgreSQL
(:meth:`RoundWrites.without_transaction`):
its changes go as one statement that commits by itself, all or nothing. Each
change's row is first locked and checked (``SELECT … FOR UPDATE`` of the
change's own condition); every change, and the notices, apply only if all of
them found their row. That spares BEGIN and COMMIT, two of a boundary's four
round trips. Changes that need more than one statement get a transaction
after all.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from storage import sql

log = logging.getLogger(__name__)

# Changes and notices per statement: far below the placeholders one may have.
CHANGES_PER_STATEMENT = 50
NOTICES_PER_STATEMENT = 50

# The writes each open round holds, by its transaction's connection: a notice
# sent on that connection joins the round's statement (storage.notify).
_OPEN: weakref.WeakKeyDictionary[Any, RoundWrites] = weakref.WeakKeyDictionary()


class ChangesLost(Exception):
    """A queued change found no row to change: none of the round's changes was stored."""


class OwnStatements:
    """The shared connection as a round without a transaction uses it: each statement
    commits alone. One object per round, so the round's notices find the round
    (:func:`open_writes`) and no one else's do."""

    def __init__(self, client: BaseDBAsyncClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass(frozen=True)
class Check:
    """A condition the round's changes depend on: ``select`` (our text, values as
    placeholders) must yield exactly one row as they apply, or none of them does.

    ``lock``: on PostgreSQL what it found is locked (``FOR UPDATE``) until the
    round commits. (SQLite's round holds the database's write lock already.)"""

    select: str
    values: Sequence[Any]
    lock: bool = False

    def text(self, dialect: str) -> str:
        return self.select + (" FOR UPDATE" if self.lock and dialect == "postgres" else "")


@dataclass(frozen=True)
class Change:
    """``UPDATE model SET changes WHERE where`` for the row ``row_id``; it wins if it counts 1."""

    model: type[Model]
    row_id: int
    changes: dict[str, Any]
    where: str
    where_values: Sequence[Any]
    counter: str | None = None

    @property
    def template(self) -> str:
        table = sql.table_of(self.model).name
        return sql.update_template(table, tuple(self.changes), self.where, self.counter)

    @property
    def shape(self) -> tuple[str, tuple[str, ...], str, str | None]:
        """What the statement's text depends on (its values aside)."""
        return sql.table_of(self.model).name, tuple(self.changes), self.where, self.counter

    def values(self) -> list[Any]:
        return [*sql.db_values(self.model, self.changes), *self.where_values]


class RoundWrites:
    """What one round will write, kept until :meth:`send`."""

    def __init__(self, conn: Any, *, transaction: bool = True) -> None:
        self.conn = conn
        self.changes: list[Change] = []
        self.notices: list[tuple[str, str]] = []
        self.checks: list[Check] = []
        # New rows (their ids reserved) that go in with the round's statement.
        self.family: tuple[Model, list[Model]] | None = None
        self._new_rows: set[tuple[type[Model], int]] = set()
        self._in_one_statement = conn.capabilities.dialect == "postgres"
        self._in_transaction = transaction
        if self._in_one_statement:  # only PostgreSQL has notices to join the statement
            _OPEN[conn] = self

    @classmethod
    def without_transaction(cls, client: BaseDBAsyncClient) -> RoundWrites:
        """The writes of a round without a transaction, on PostgreSQL's shared ``client``;
        ``.conn`` is the round's own view of it (:class:`OwnStatements`)."""
        if client.capabilities.dialect != "postgres":
            raise ValueError("only PostgreSQL rounds go without a transaction")
        return cls(OwnStatements(client), transaction=False)

    @property
    def one_statement(self) -> bool:
        """Does this round go as one statement, without a transaction of its own
        (PostgreSQL, nothing else to commit with it)?"""
        return not self._in_transaction

    def insert_family(self, parent: Model, children: list[Model]) -> None:
        """Insert ``parent`` and its ``children`` (ids reserved, ``sql.reserve_ids``)
        first in the round's statement, with the values their objects hold when it
        is sent: a change queued meanwhile for one of them is already on its object
        (nothing can have moved a row that is not yet stored), so it goes in with it."""
        if not self.one_statement or self.family is not None:
            raise ValueError("one new family per round, in a round without a transaction")
        self.family = (parent, children)
        self._new_rows = {(type(row), row.pk) for row in (parent, *children)}

    def add(self, change: Change) -> None:
        if (change.model, change.row_id) in self._new_rows:
            return  # the row goes in with the change already on it
        self.changes.append(change)

    def check(self, check: Check) -> None:
        """The round's changes apply only if ``check`` still holds as they do
        (:class:`ChangesLost` otherwise): checked in their statement, or first in
        their transaction."""
        self.checks.append(check)

    def notify(self, channel: str, payloads: Sequence[str]) -> None:
        self.notices.extend((channel, payload) for payload in payloads)

    def close(self) -> None:
        if _OPEN.get(self.conn) is self:
            del _OPEN[self.conn]

    async def send(self) -> None:
        """Send what was queued, in order; :class:`ChangesLost` if a change found no row
        (raised inside the round's transaction, which then rolls back: nothing is stored)."""
        changes, notices, checks = self.changes, self.notices, self.checks
        self.changes, self.notices, self.checks = [], [], []
        family, self.family = self.family, None
        if family is not None:
            await _insert_family(self.conn, family, changes, notices, checks)
            return
        if self._in_transaction:
            if changes:
                await _hold(self.conn, checks)
            await _send(self.conn, changes, notices)
            return
        batches = _batches(changes)
        if len(batches) <= 1 and len(notices) <= NOTICES_PER_STATEMENT:
            await _all_or_nothing(self.conn, batches[0] if batches else [], notices, checks)
            return
        async with in_transaction() as conn:  # more than one statement: they commit together
            if changes:
                await _hold(conn, checks)
            await _send(conn, changes, notices)


def open_writes(conn: Any) -> RoundWrites | None:
    """The open round whose transaction ``conn`` is, if any."""
    try:
        return _OPEN.get(conn)
    except TypeError:  # not weakly referenceable: no round's connection
        return None


def _batches(changes: list[Change]) -> list[list[Change]]:
    """Consecutive runs of changes in which no row comes twice, each of bounded size."""
    batches: list[list[Change]] = []
    rows: set[tuple[str, int]] = set()
    for change in changes:
        row = (change.model.__name__, change.row_id)
        if not batches or row in rows or len(batches[-1]) >= CHANGES_PER_STATEMENT:
            batches.append([])
            rows = set()
        batches[-1].append(change)
        rows.add(row)
    return batches


async def _send(
    conn: BaseDBAsyncClient, changes: list[Change], notices: list[tuple[str, str]]
) -> None:
    if conn.capabilities.dialect != "postgres":
        await _one_by_one(conn, changes)
        return
    batches = _batches(changes) or [[]]
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        riding = notices[:NOTICES_PER_STATEMENT] if last else []
        await _together(conn, batch, riding)
    for start in range(NOTICES_PER_STATEMENT, len(notices), NOTICES_PER_STATEMENT):
        await _together(conn, [], notices[start : start + NOTICES_PER_STATEMENT])


async def _one_by_one(conn: BaseDBAsyncClient, changes: list[Change]) -> None:
    for change in changes:
        count, _ = await conn.execute_query(sql.render(conn, change.template), change.values())
        if int(count) != 1:
            raise ChangesLost()


async def _together(
    conn: BaseDBAsyncClient, changes: list[Change], notices: list[tuple[str, str]]
) -> None:
    if not changes and not notices:
        return
    statement = _statement(tuple(c.template for c in changes), len(notices))
    values: list[Any] = []
    for change in changes:
        values += change.values()
    for channel, payload in notices:
        values += [channel, payload]
    _, rows = await conn.execute_query(statement, values)
    if any(int(rows[0][i]) != 1 for i in range(len(changes))):
        raise ChangesLost()


async def _insert_family(
    conn: Any,
    family: tuple[Model, list[Model]],
    changes: list[Change],
    notices: list[tuple[str, str]],
    checks: list[Check],
) -> None:
    """New rows and the round's notices as one statement that commits alone. Anything
    else in the round (not expected of a run's first round) goes with them in a
    transaction."""
    parent, children = family
    if changes or checks or len(notices) > NOTICES_PER_STATEMENT:
        async with in_transaction() as tx:
            await _family_statement(tx, parent, children, [])
            await _hold(tx, checks)
            await _send(tx, changes, notices)
        return
    await _family_statement(conn, parent, children, notices)


async def _family_statement(
    conn: Any, parent: Model, children: list[Model], notices: list[tuple[str, str]]
) -> None:
    model = type(children[0]) if children else type(parent)
    statement = _family_and_notices(type(parent), model, len(children), len(notices))
    values = sql.family_values(parent, children)
    for channel, payload in notices:
        values += [channel, payload]
    await conn.execute_query(statement, values)
    for row in (parent, *children):
        row._saved_in_db = True


@functools.lru_cache(maxsize=64)
def _family_and_notices(
    parent: type[Model], child: type[Model], children: int, notices: int
) -> str:
    parts = [sql.insert_family_template(parent, child, children)]
    selected = "1"
    if notices:
        rows = ", ".join(["(?, ?)"] * notices)
        notify = f"SELECT pg_notify(chan, body) FROM (VALUES {rows}) AS v(chan, body)"  # noqa: S608
        parts.append(f"n AS ({notify})")
        selected = "(SELECT count(*) FROM n)"
    return sql.render_for("postgres", f"WITH {', '.join(parts)} SELECT {selected}")


async def _hold(conn: BaseDBAsyncClient, checks: list[Check]) -> None:
    """Inside a transaction: each check holds (and what it locks stays locked), or
    :class:`ChangesLost`."""
    if not checks:
        return
    dialect = conn.capabilities.dialect
    statement = _checks_statement(tuple(c.text(dialect) for c in checks), dialect)
    _, rows = await conn.execute_query(statement, [v for c in checks for v in c.values])
    if not rows or not rows[0][0]:
        raise ChangesLost()


async def _all_or_nothing(
    conn: Any,
    changes: list[Change],
    notices: list[tuple[str, str]],
    checks: Sequence[Check] = (),
) -> None:
    """One statement that commits alone: every change and notice, or none of them."""
    if not changes:
        await _together(conn, [], notices)  # notices only: nothing to lose
        return
    statement = _guarded_statement(
        tuple(c.shape for c in changes), len(notices), tuple(c.text("postgres") for c in checks)
    )
    values: list[Any] = [v for check in checks for v in check.values]
    for change in changes:
        values += change.where_values  # the lock and check of its row
    for change in changes:
        values += change.values()
    for channel, payload in notices:
        values += [channel, payload]
    _, rows = await conn.execute_query(statement, values)
    if not rows or not rows[0][0]:
        raise ChangesLost()
    if any(int(rows[0][i + 1]) != 1 for i in range(len(changes))):
        # Cannot happen while the rows are locked; if it did, what is stored is the
        # truth: the round counts as lost, nothing of it is told or done, and the
        # drive plans again from what is stored.
        log.error("a round's guarded changes applied in part: %s", list(rows[0]))
        raise ChangesLost()


@functools.lru_cache(maxsize=256)
def _statement(templates: tuple[str, ...], notices: int) -> str:
    """One PostgreSQL statement: a CTE per change, its count, then the notices."""
    ctes = [f"w{i} AS ({template} RETURNING 1)" for i, template in enumerate(templates)]
    selected = [f"(SELECT count(*) FROM w{i})" for i in range(len(templates))]  # noqa: S608
    selected += ["pg_notify(?, ?)"] * notices
    head = f"WITH {', '.join(ctes)} " if ctes else ""
    return sql.render_for("postgres", f"{head}SELECT {', '.join(selected)}")


@functools.lru_cache(maxsize=64)
def _checks_statement(checks: tuple[str, ...], dialect: str) -> str:
    """True when every check yields its row."""
    parts = [f"c{i} AS ({check})" for i, check in enumerate(checks)]
    found = " + ".join(f"(SELECT count(*) FROM c{i})" for i in range(len(checks)))  # noqa: S608
    text = f"WITH {', '.join(parts)} SELECT ({found}) = {len(checks)}"
    return sql.render_for(dialect, text)


@functools.lru_cache(maxsize=256)
def _guarded_statement(
    shapes: tuple[tuple[str, tuple[str, ...], str, str | None], ...],
    notices: int,
    checks: tuple[str, ...] = (),
) -> str:
    """A statement for :func:`_all_or_nothing`: the round's checks (``cN``), then
    lock and check each change's row (``gN``), then each change (``wN``) and the
    notices only if every check held and every row was found.

    All of a statement's parts see one snapshot. A row another writer changed
    since is locked once that writer commits and checked again as it then
    stands; once locked, no one else can move it before the changes apply.
    """
    # Our table names and conditions only; every value is a placeholder.
    won = "(SELECT won FROM guard)"
    parts = [f"c{i} AS ({check})" for i, check in enumerate(checks)]
    parts += [
        f'g{i} AS (SELECT 1 FROM "{table}" WHERE {where} FOR UPDATE)'  # noqa: S608
        for i, (table, _, where, _) in enumerate(shapes)
    ]
    counted = [f"(SELECT count(*) FROM c{i})" for i in range(len(checks))]  # noqa: S608
    counted += [f"(SELECT count(*) FROM g{i})" for i in range(len(shapes))]  # noqa: S608
    found = " + ".join(counted)
    parts.append(f"guard AS (SELECT {found} = {len(shapes) + len(checks)} AS won)")
    for i, (table, columns, where, counter) in enumerate(shapes):
        update = sql.update_template(table, columns, f"({where}) AND {won}", counter)
        parts.append(f"w{i} AS ({update} RETURNING 1)")
    selected = [won, *(f"(SELECT count(*) FROM w{i})" for i in range(len(shapes)))]  # noqa: S608
    if notices:
        rows = ", ".join(["(?, ?)"] * notices)
        notify = f"SELECT pg_notify(c, p) FROM (VALUES {rows}) AS v(c, p) WHERE {won}"  # noqa: S608
        parts.append(f"n AS ({notify})")
        selected.append("(SELECT count(*) FROM n)")
    text = f"WITH {', '.join(parts)} SELECT {', '.join(selected)}"
    return sql.render_for("postgres", text)
