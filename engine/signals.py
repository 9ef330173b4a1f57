"""Signals between replicas over PostgreSQL ``LISTEN``/``NOTIFY``.

Two kinds, as compact JSON on one channel:

* ``{"k": "cancel", "to": REPLICA, "run": ID}``: the replica that owns a step's
  process (or trigger) ends it — it drives the run, whose plan now cancels;
* ``{"k": "event", "from": REPLICA, "run": ID, "t": TYPE, "step": ID}``: an
  engine event happened elsewhere; local listeners (the WebSocket hub) read
  the run and pass it on.

A missed signal is caught by the slow poll behind each (the lease keeper's
sweep drives runs asked to cancel; the hub's clients see the next event).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.events import Event, StepLog
from engine.replica import ReplicaRef
from storage.notify import Listener, notify, notify_all
from storage.outage import is_database_outage

log = logging.getLogger(__name__)

CHANNEL = "ansflow_replicas"
# Events from other replicas waiting to be passed on (the WebSocket hub reads each run).
MAX_QUEUED_EVENTS = 10_000

RemoteEventHandler = Callable[[int, str, int | None], Awaitable[None] | None]


def encode_cancel(to: str, run_id: int) -> str:
    return json.dumps({"k": "cancel", "to": to, "run": run_id}, separators=(",", ":"))


def encode_event(origin: str, run_id: int, event_type: str, step_id: int | None) -> str:
    body = {"k": "event", "from": origin, "run": run_id, "t": event_type, "step": step_id}
    return json.dumps(body, separators=(",", ":"))


def decode(payload: str) -> dict[str, Any] | None:
    """The signal, or None for anything malformed (never raises)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("run"), int):
        return None
    if body.get("k") == "cancel" and isinstance(body.get("to"), str):
        return body
    if body.get("k") == "event" and isinstance(body.get("t"), str):
        step = body.get("step")
        return body if step is None or isinstance(step, int) else None
    return None


class PgSignals:
    """The :class:`engine.replica.Signals` of a replica on PostgreSQL."""

    def __init__(self, url: str, replica: ReplicaRef) -> None:
        self.replica = replica
        self.on_cancel: Callable[[int], Awaitable[None]] | None = None
        self._remote: list[RemoteEventHandler] = []
        self._listener = Listener(url, CHANNEL, self._received)
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: deque[tuple[int, str, int | None]] = deque()
        self._relay: asyncio.Task[None] | None = None

    def subscribe_remote(self, handler: RemoteEventHandler) -> None:
        self._remote.append(handler)

    def start(self) -> None:
        self._listener.start()

    async def wait_listening(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._listener.connected.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        await self._listener.stop()
        if self._relay is not None:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self, owner: str, run_id: int) -> None:
        await self._send(encode_cancel(owner, run_id))

    async def event(self, run_id: int, event_type: str, step_id: int | None) -> None:
        await self._send(encode_event(self.replica.id, run_id, event_type, step_id))

    async def on_local_events(self, events: Sequence[Event], conn: Any) -> None:
        """In-transaction subscriber: tell the other replicas of a round's status changes.

        The notices ride in the change's own transaction, in one statement, so
        they cost no commit or round trip of their own, and they are delivered
        (in order) only if the change commits. Live log lines stay local: other
        replicas read a running step's output from its row, which the step's
        own replica flushes every second.
        """
        payloads = []
        for event in events:
            if isinstance(event, StepLog):
                continue
            step = getattr(event, "step", None)
            step_id = step.id if step is not None else None
            payloads.append(encode_event(self.replica.id, event.run.id, event.type, step_id))
        if payloads:
            await notify_all(CHANNEL, payloads, conn)

    async def _send(self, payload: str) -> None:
        try:
            await notify(CHANNEL, payload)
        except Exception as exc:
            # The slow poll behind every signal covers a lost one.
            if not is_database_outage(exc):
                raise
            log.warning("replica signal not sent (database unreachable)")

    def _received(self, payload: str) -> None:
        body = decode(payload)
        if body is None:
            log.warning("ignored a malformed replica signal")
            return
        if body["k"] == "cancel":
            if body["to"] == self.replica.id and self.on_cancel is not None:
                self._spawn(self.on_cancel(int(body["run"])))
            return
        if body.get("from") == self.replica.id:
            return
        if not self._remote:
            return
        # One after another, in the order sent: a round's events arrive together
        # at its commit, and a client must see a step's end before the run's.
        if len(self._events) >= MAX_QUEUED_EVENTS:
            log.warning("dropped a replica event: %s are waiting", len(self._events))
            return
        self._events.append((int(body["run"]), str(body["t"]), body.get("step")))
        if self._relay is None or self._relay.done():
            self._relay = asyncio.create_task(self._relay_events(), name="replica-events")

    async def _relay_events(self) -> None:
        while self._events:
            run_id, event_type, step_id = self._events.popleft()
            for handler in self._remote:
                try:
                    result = handler(run_id, event_type, step_id)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("handling a replica event failed")

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("handling a replica signal failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
