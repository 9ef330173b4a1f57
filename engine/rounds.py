"""One round of a run's drive: its writes in one transaction, its acts after the commit.

A round holds every compare-and-set the plan asked for at one moment (a
step's end and the next step's start, say), so a step boundary costs one
commit. What the round decided to announce or to do (start a process,
trigger a build, stop a step) waits in the round until the transaction has
committed: nothing is announced or done that is not stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import Event, EventBus


@dataclass
class Round:
    conn: Any
    events: list[Event] = field(default_factory=list)
    acts: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def announce(self, bus: EventBus, event: Event) -> None:
        """In-transaction subscribers now (outbox rows commit with the change); the rest after."""
        await bus.publish_in_tx(event, self.conn)
        self.events.append(event)

    def then(self, act: Callable[[], Awaitable[Any]]) -> None:
        self.acts.append(act)

    async def committed(self, bus: EventBus) -> None:
        """After the commit: the events in the order they happened, then the acts."""
        for event in self.events:
            await bus.publish(event)
        for act in self.acts:
            await act()
