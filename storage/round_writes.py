"""A round's compare-and-sets and notices, sent together as the round ends.

A step boundary used to send PostgreSQL one statement per compare-and-set and
one for the replicas' notice, each a round trip (about 0.3 ms here, more than
the statement's own work). Queued here instead, they go as one statement:
each compare-and-set a data-modifying CTE that reports its row count, the
notices ``pg_notify`` calls in its SELECT. SQLite, whose statements cost
microseconds, gets them one by one, in order.

The counts come back in the order the changes were queued. A row changed twice
in one round is sent in two statements (PostgreSQL leaves undefined which of
two changes of one row in a statement wins).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from storage import sql

# Changes and notices per statement: far below the placeholders one may have.
CHANGES_PER_STATEMENT = 50
NOTICES_PER_STATEMENT = 50

# The writes each open round holds, by its transaction's connection: a notice
# sent on that connection joins the round's statement (storage.notify).
_OPEN: weakref.WeakKeyDictionary[Any, RoundWrites] = weakref.WeakKeyDictionary()


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

    def values(self) -> list[Any]:
        return [*sql.db_values(self.model, self.changes), *self.where_values]


class RoundWrites:
    """What one round will write, kept until :meth:`send`."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn
        self.changes: list[Change] = []
        self.notices: list[tuple[str, str]] = []
        self._in_one_statement = conn.capabilities.dialect == "postgres"
        if self._in_one_statement:  # only PostgreSQL has notices to join the statement
            _OPEN[conn] = self

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def notify(self, channel: str, payloads: Sequence[str]) -> None:
        self.notices.extend((channel, payload) for payload in payloads)

    def close(self) -> None:
        if _OPEN.get(self.conn) is self:
            del _OPEN[self.conn]

    async def send(self) -> list[int]:
        """Send what was queued; each change's row count, in order."""
        changes, notices = self.changes, self.notices
        self.changes, self.notices = [], []
        if not self._in_one_statement:
            return await _one_by_one(self.conn, changes)
        counts: list[int] = []
        batches = _batches(changes) or [[]]
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            riding = notices[:NOTICES_PER_STATEMENT] if last else []
            counts += await _together(self.conn, batch, riding)
        for start in range(NOTICES_PER_STATEMENT, len(notices), NOTICES_PER_STATEMENT):
            await _together(self.conn, [], notices[start : start + NOTICES_PER_STATEMENT])
        return counts


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


async def _one_by_one(conn: BaseDBAsyncClient, changes: list[Change]) -> list[int]:
    counts = []
    for change in changes:
        count, _ = await conn.execute_query(sql.render(conn, change.template), change.values())
        counts.append(int(count))
    return counts


async def _together(
    conn: BaseDBAsyncClient, changes: list[Change], notices: list[tuple[str, str]]
) -> list[int]:
    if not changes and not notices:
        return []
    statement = _statement(tuple(c.template for c in changes), len(notices))
    values: list[Any] = []
    for change in changes:
        values += change.values()
    for channel, payload in notices:
        values += [channel, payload]
    _, rows = await conn.execute_query(statement, values)
    return [int(rows[0][i]) for i in range(len(changes))]


@functools.lru_cache(maxsize=256)
def _statement(templates: tuple[str, ...], notices: int) -> str:
    """One PostgreSQL statement: a CTE per change, its count, then the notices."""
    ctes = [f"w{i} AS ({template} RETURNING 1)" for i, template in enumerate(templates)]
    selected = [f"(SELECT count(*) FROM w{i})" for i in range(len(templates))]  # noqa: S608
    selected += ["pg_notify(?, ?)"] * notices
    head = f"WITH {', '.join(ctes)} " if ctes else ""
    return sql.render_for("postgres", f"{head}SELECT {', '.join(selected)}")
