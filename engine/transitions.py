"""Status changes as the engine asks for them: allowed sources from ``engine.state``.

Each is one compare-and-set in ``storage.runs``; a lost one returns False and
changes nothing (ARCHITECTURE.md decision 1). In a round they are queued and
sent together as the round ends (``engine.rounds``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from engine.state import RUN_ACTIVE, RunStatus, StepStatus, run_sources, step_sources
from storage import runs as store
from storage.models import Run, StepRun
from storage.round_writes import RoundWrites

ACTIVE_RUN_VALUES = tuple(sorted(s.value for s in RUN_ACTIVE))


async def move_run(run: Run, proposed: RunStatus, conn: BaseDBAsyncClient, **fields: Any) -> bool:
    """Move ``run`` to ``proposed`` if its stored status still allows it; update ``run``."""
    sources = [s.value for s in run_sources(proposed)]
    return await store.set_run_status(run, proposed.value, sources, conn, **fields)


async def move_step(
    step: StepRun,
    proposed: StepStatus,
    conn: BaseDBAsyncClient,
    *,
    expected: Iterable[StepStatus] | None = None,
    **fields: Any,
) -> bool:
    """Move ``step`` to ``proposed`` if its stored status is one of ``expected``.

    ``expected`` defaults to every status from which ``proposed`` is allowed.
    """
    allowed = step_sources(proposed)
    sources = [s.value for s in (expected if expected is not None else allowed) if s in allowed]
    return await store.set_step_status(step, proposed.value, sources, conn, **fields)


def queue_move_run(run: Run, proposed: RunStatus, writes: RoundWrites, **fields: Any) -> bool:
    """:func:`move_run` queued in a round (the round ends lost if it loses)."""
    sources = [s.value for s in run_sources(proposed)]
    return store.queue_run_status(writes, run, proposed.value, sources, **fields)


def queue_move_step(
    step: StepRun,
    proposed: StepStatus,
    writes: RoundWrites,
    *,
    expected: Iterable[StepStatus] | None = None,
    **fields: Any,
) -> bool:
    """:func:`move_step` queued in a round (the round ends lost if it loses)."""
    allowed = step_sources(proposed)
    sources = [s.value for s in (expected if expected is not None else allowed) if s in allowed]
    return store.queue_step_status(writes, step, proposed.value, sources, **fields)


async def request_cancel(run: Run, by: str, conn: BaseDBAsyncClient) -> bool:
    return await store.request_cancel(run, by, ACTIVE_RUN_VALUES, conn)


async def active_run_ids() -> list[int]:
    return await store.active_run_ids(ACTIVE_RUN_VALUES)
