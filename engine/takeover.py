"""Adopting the work of dead replicas, and moving runs nothing else moves.

Run by every live replica at start and then every few seconds (the lease
keeper). Each item is adopted with a compare-and-set on its owner, so of many
replicas sweeping at once exactly one takes it. A replica that has just come
back from a database outage adopts nothing until it has been connected for a
whole lease: the owners it would call dead may only be late renewing.

A change violates this module when it touches a step or run whose owner is
alive, or acts on an item without winning its compare-and-set first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from engine.state import RUN_ACTIVE, STEP_ACTIVE
from storage.leases import (
    adopt_run,
    adopt_step,
    idle_runs_of,
    live_replica_ids,
    orphaned_runs,
    orphaned_steps,
    runs_cancelling_with_steps_of,
)

if TYPE_CHECKING:
    from engine.runner import Engine

log = logging.getLogger(__name__)

ACTIVE_RUNS = tuple(sorted(s.value for s in RUN_ACTIVE))
ACTIVE_STEPS = tuple(sorted(s.value for s in STEP_ACTIVE))


async def sweep(engine: Engine) -> int:
    """One pass; returns how many runs this replica took over (steps or the run itself)."""
    me = engine.replica.id
    alive = frozenset(await live_replica_ids()) | {me}
    engine.replica.alive = alive
    adopted = 0
    if engine.replica.adopts and not engine.replica.draining and engine.replica.settled():
        adopted = await _adopt(engine, alive)
    for run_id in await runs_cancelling_with_steps_of(me, ACTIVE_STEPS):
        await _guarded(engine.drive(run_id), run_id)
    if not engine.replica.draining:
        for run_id in await idle_runs_of(me, ACTIVE_RUNS, ACTIVE_STEPS):
            await _guarded(engine.drive(run_id), run_id)
    return adopted


async def _adopt(engine: Engine, alive: frozenset[str]) -> int:
    me = engine.replica.id
    adopted: set[int] = set()
    for step_id, run_id, owner in await orphaned_steps(alive, ACTIVE_STEPS):
        if not await adopt_step(step_id, owner, me):
            continue
        log.info("adopted step %s of run %s from %s", step_id, run_id, owner or "no owner")
        adopted.add(run_id)
        await _guarded(engine.recover_step(run_id, step_id), run_id)
    for run_id in await orphaned_runs(alive, ACTIVE_RUNS):
        if not await adopt_run(run_id, alive, me):
            continue
        log.info("adopted run %s", run_id)
        adopted.add(run_id)
        await _guarded(engine.drive(run_id), run_id)
    return len(adopted)


async def _guarded(work: Awaitable[None], run_id: int) -> None:
    try:
        await work
    except Exception:
        log.exception("run %s: taking over failed; the next sweep tries again", run_id)
