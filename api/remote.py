"""WebSocket clients of this replica also hear of runs other replicas drive."""

from __future__ import annotations

from api.hub import Hub
from engine.remote_events import rebuild
from engine.signals import RemoteEventHandler


def remote_event_handler(hub: Hub) -> RemoteEventHandler:
    async def on_remote(run_id: int, event_type: str, step_id: int | None) -> None:
        if not any(c.run_id in (None, run_id) for c in hub.clients):
            return
        event = await rebuild(run_id, event_type, step_id)
        if event is not None:
            hub.on_event(event)

    return on_remote
