"""One round of a run's drive: its writes in one transaction, its acts after the commit.

A round holds every compare-and-set the plan asked for at one moment (a
step's end and the next step's start, say), so a step boundary costs one
commit. They are queued as the plan makes them (the held rows change at
once, as if each had won) and sent together as the round ends, with the
replicas' notice: on PostgreSQL one statement, not one round trip each
(``storage.round_writes``). If any of them lost, the round is lost whole:
its transaction rolls back, nothing of it is announced or done, and the
drive plans again from what is stored (:class:`RoundLost`).

What the round decided to announce or to do (start a process, trigger a
build, stop a step) waits in the round until the transaction has committed:
nothing is announced or done that is not stored. In-transaction subscribers
(the Slack outbox, the replicas' notice) get the round's events together as
its writes end, inside the transaction.

A round that only reads and queues changes (``alone``: a step boundary, not
a run's creation) needs no transaction of its own on PostgreSQL when nothing
is to commit with its changes (no outbox: no Slack): its reads see what is
committed, as a transaction's would, and its changes go as one statement
that commits whole or not at all (``RoundWrites.without_transaction``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from engine.events import Event, EventBus
from storage.round_writes import ChangesLost, RoundWrites


class RoundLost(Exception):
    """A compare-and-set of the round lost (its row moved meanwhile): none of it was stored."""


@dataclass
class Round:
    conn: Any
    writes: RoundWrites
    events: list[Event] = field(default_factory=list)
    acts: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def announce(self, bus: EventBus, event: Event) -> None:
        """Told to in-transaction subscribers when the round is sealed (outbox rows and
        the replicas' notice commit with the change), to the rest after the commit."""
        self.events.append(event)

    async def seal(self, bus: EventBus) -> None:
        """The round's writes are done: the queued compare-and-sets go, with the notice
        the batch subscribers add (:class:`RoundLost` if one lost); then the other
        in-transaction subscribers (the outbox) get the events, and see those writes."""
        await bus.publish_batch_in_tx(self.events, self.conn)
        try:
            await self.writes.send()
        except ChangesLost:
            raise RoundLost() from None
        await bus.publish_each_in_tx(self.events, self.conn)

    def then(self, act: Callable[[], Awaitable[Any]]) -> None:
        self.acts.append(act)

    async def committed(self, bus: EventBus) -> None:
        """After the commit: the events in the order they happened, then the acts."""
        for event in self.events:
            await bus.publish(event)
        for act in self.acts:
            await act()


@asynccontextmanager
async def round_of(bus: EventBus, *, alone: bool = False) -> AsyncIterator[Round]:
    """A transaction for one round; sealed as its body ends, rolled back if it raises.

    ``alone``: the body only reads and queues changes (it writes nothing on
    ``conn`` itself), so on PostgreSQL, with no per-event in-transaction
    subscriber, the round goes without a transaction of its own.
    """
    client = connections.get("default")
    if alone and not bus.has_each_in_tx() and client.capabilities.dialect == "postgres":
        writes = RoundWrites.without_transaction(client)
        now = Round(writes.conn, writes)
        try:
            yield now
            await now.seal(bus)
        finally:
            writes.close()
        return
    async with in_transaction() as conn:
        now = Round(conn, RoundWrites(conn))
        try:
            yield now
            await now.seal(bus)
        finally:
            now.writes.close()
