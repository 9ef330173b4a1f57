"""The WebSocket hub: engine events (after commit) → bounded per-client queues.

``on_event`` is an after-commit bus subscriber: it renders the event once,
offers it to every client that may see the run with ``put_nowait`` and
returns. A ``step.log`` event (a running step's lines, already batched and
bounded by the engine) goes only to clients that asked for logs. A client
whose queue is full is dropped (its connection aborted); the engine and the
other clients never wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from api.common import PipelineCache
from api.render import event_json
from engine.events import Event, RunFinished, StepLog
from engine.permissions import Actor, may_view

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000


@dataclass(eq=False)
class Client:
    actor: Actor
    run_id: int | None  # None: every run the actor may see
    queue: asyncio.Queue[tuple[Event, str]]
    on_drop: Callable[[], None]
    dropped: bool = False
    received: int = 0
    logs: bool = False  # wants step.log events


class Hub:
    def __init__(self, admins: frozenset[str], queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.admins = admins
        self.queue_size = queue_size
        self.clients: set[Client] = set()
        self.dropped = 0
        self.pipelines = PipelineCache()

    def add(
        self,
        actor: Actor,
        run_id: int | None,
        on_drop: Callable[[], None],
        *,
        logs: bool = False,
    ) -> Client:
        queue: asyncio.Queue[tuple[Event, str]] = asyncio.Queue(maxsize=self.queue_size)
        client = Client(actor, run_id, queue, on_drop, logs=logs)
        self.clients.add(client)
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    def on_event(self, event: Event) -> None:
        if not self.clients:
            return
        text: str | None = None
        pipeline = None
        is_log = isinstance(event, StepLog)
        for client in list(self.clients):
            if client.dropped or (is_log and not client.logs):
                continue
            if client.run_id is not None:
                if client.run_id != event.run.id:
                    continue
            else:
                if pipeline is None:
                    pipeline = self.pipelines.get(event.run.definition)
                if not may_view(pipeline, event.run.triggered_by, client.actor, self.admins):
                    continue
            if text is None:
                body = log_json(event) if isinstance(event, StepLog) else event_json(event)
                text = json.dumps(body)
            try:
                client.queue.put_nowait((event, text))
                client.received += 1
            except asyncio.QueueFull:
                self._drop(client)
        if isinstance(event, RunFinished):
            log.debug("run %s finished; %s WebSocket client(s)", event.run.id, len(self.clients))

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self.dropped += 1
        self.clients.discard(client)
        log.warning(
            "WebSocket client of %s dropped: %s events queued unread",
            client.actor.user_id,
            client.queue.qsize(),
        )
        client.on_drop()

    def close_all(self) -> None:
        for client in list(self.clients):
            client.on_drop()
        self.clients.clear()


def log_json(event: StepLog) -> dict[str, object]:
    """``{"type": "step.log", "execution_id", "step", "step_id", "lines"}``."""
    return {
        "type": event.type,
        "execution_id": event.run.id,
        "step": event.step_name,
        "step_id": event.step_id,
        "lines": list(event.lines),
    }
