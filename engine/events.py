"""Typed events out of the engine, and the bus that fans them out.

Two kinds of subscribers (ARCHITECTURE.md decisions 4 and 7):

* ``in_tx`` subscribers run inside the database transaction of the state
  change, with its connection, so what they write (Slack outbox rows) commits
  or rolls back together with the change;
* ``after_commit`` subscribers (WebSocket hub, metrics, waiters) run once the
  change is committed. They must not block: queue the event and return.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.state import RunStatus, StepStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSnapshot:
    id: int
    path: str
    name: str
    kind: str
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    log_tail: str = ""
    external_url: str | None = None


@dataclass(frozen=True)
class RunSnapshot:
    id: int
    pipeline: str
    status: RunStatus
    parameters: dict[str, str]
    trigger_type: str
    triggered_by: str
    source: str
    channel_id: str | None
    thread_ts: str | None
    reason: str | None
    failed_step: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[StepSnapshot, ...] = ()
    # Concurrency groups (engine/concurrency.py): the run's group, and while it
    # waits ``queued``, the run it waits behind.
    concurrency_group: str | None = None
    queued_behind: int | None = None
    definition: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return None
        return (end - self.started_at).total_seconds()

    def step(self, step_id: int) -> StepSnapshot | None:
        return next((s for s in self.steps if s.id == step_id), None)


@dataclass(frozen=True)
class Event:
    run: RunSnapshot

    @property
    def type(self) -> str:
        return _EVENT_NAMES[type(self)]


@dataclass(frozen=True)
class RunStarted(Event):
    pass


@dataclass(frozen=True)
class RunStatusChanged(Event):
    """Between running and waiting_approval."""


@dataclass(frozen=True)
class CancelRequested(Event):
    by: str = ""


@dataclass(frozen=True)
class StepStarted(Event):
    step: StepSnapshot | None = None


@dataclass(frozen=True)
class StepUpdated(Event):
    """A step changed without changing status (e.g. its Jenkins build became known)."""

    step: StepSnapshot | None = None


@dataclass(frozen=True)
class StepFinished(Event):
    step: StepSnapshot | None = None


@dataclass(frozen=True)
class ApprovalRequested(Event):
    step: StepSnapshot | None = None
    approval_id: int = 0


@dataclass(frozen=True)
class ApprovalDecided(Event):
    step: StepSnapshot | None = None
    approval_id: int = 0
    user_id: str = ""
    decision: str = ""
    comment: str | None = None
    final: bool = False


@dataclass(frozen=True)
class RunFinished(Event):
    pass


@dataclass(frozen=True)
class StepLog(Event):
    """Lines a running step printed, masked, batched and bounded (``engine.output``).

    Published after commit only (nothing is stored with it), so in-transaction
    subscribers never see it. ``run`` is the run as it was when the step started.
    """

    step_id: int = 0
    step_name: str = ""
    lines: tuple[str, ...] = ()


_EVENT_NAMES: dict[type[Event], str] = {
    RunStarted: "run.started",
    RunStatusChanged: "run.status",
    CancelRequested: "run.cancel_requested",
    StepStarted: "step.started",
    StepUpdated: "step.updated",
    StepFinished: "step.finished",
    ApprovalRequested: "approval.requested",
    ApprovalDecided: "approval.decided",
    RunFinished: "run.finished",
    StepLog: "step.log",
}

InTxHandler = Callable[[Event, Any], Awaitable[None]]
# Given every event of one transaction at once (in a round: before its writes are sent).
InTxBatchHandler = Callable[[Sequence[Event], Any], Awaitable[None]]
AfterCommitHandler = Callable[[Event], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._in_tx: list[InTxHandler] = []
        self._in_tx_batch: list[InTxBatchHandler] = []
        self._after_commit: list[AfterCommitHandler] = []

    def subscribe_in_tx(self, handler: InTxHandler) -> None:
        self._in_tx.append(handler)

    def subscribe_in_tx_batch(self, handler: InTxBatchHandler) -> None:
        """A subscriber that takes a transaction's events together (one notice, not one each)."""
        self._in_tx_batch.append(handler)

    def has_in_tx(self) -> bool:
        return bool(self._in_tx or self._in_tx_batch)

    def has_each_in_tx(self) -> bool:
        """Is there a subscriber that takes events one at a time in the transaction
        (and may read and write rows there, as the Slack outbox does)?"""
        return bool(self._in_tx)

    def subscribe(self, handler: AfterCommitHandler) -> None:
        self._after_commit.append(handler)

    def unsubscribe(self, handler: AfterCommitHandler) -> None:
        if handler in self._after_commit:
            self._after_commit.remove(handler)

    async def publish_in_tx(self, event: Event, connection: Any) -> None:
        """Errors propagate: the transaction is rolled back with the change."""
        await self.publish_all_in_tx([event], connection)

    async def publish_all_in_tx(self, events: Sequence[Event], connection: Any) -> None:
        """Every event of one transaction, in order, inside it (errors roll it back)."""
        await self.publish_each_in_tx(events, connection)
        await self.publish_batch_in_tx(events, connection)

    async def publish_each_in_tx(self, events: Sequence[Event], connection: Any) -> None:
        """The subscribers that take one event at a time (they may read what it changed)."""
        for event in events:
            for handler in self._in_tx:
                await handler(event, connection)

    async def publish_batch_in_tx(self, events: Sequence[Event], connection: Any) -> None:
        """The subscribers that take a transaction's events together. An engine round
        calls them before its compare-and-sets are sent (their notices join that
        statement), so they must not read the rows the events are about."""
        if not events:
            return
        for batch in self._in_tx_batch:
            await batch(events, connection)

    async def publish(self, event: Event) -> None:
        for handler in list(self._after_commit):
            try:
                result = handler(event)
                if result is not None:
                    await result
            except Exception:  # one subscriber's bug must not stop the engine
                log.exception("event subscriber %r failed on %s", handler, event.type)


def event_class(name: str) -> type[Event] | None:
    """The event type called ``name`` (``step.finished`` …), for events from other replicas."""
    return next((cls for cls, known in _EVENT_NAMES.items() if known == name), None)
