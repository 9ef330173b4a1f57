"""Engine events that happened on another replica, rebuilt from the database.

A signal names the run, the event type and the step; the run as it is stored
now stands in for the snapshot the other replica published (it may already
show later changes, never earlier ones).
"""

from __future__ import annotations

import dataclasses

from engine.events import Event, StepLog, event_class
from engine.snapshots import run_snapshot
from storage import runs as store


async def rebuild(run_id: int, event_type: str, step_id: int | None) -> Event | None:
    cls = event_class(event_type)
    if cls is None or cls is StepLog:
        return None
    run = await store.read_run(run_id)
    if run is None:
        return None
    snapshot = run_snapshot(run, await store.read_steps(run_id))
    names = {f.name for f in dataclasses.fields(cls)}
    if "step" in names:
        step = snapshot.step(step_id) if step_id is not None else None
        if step is None:
            return None
        return cls(run=snapshot, step=step)  # type: ignore[call-arg]
    return cls(run=snapshot)
