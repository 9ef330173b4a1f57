"""Status changes as the engine asks for them: allowed sources from ``engine.state``.

Each is one compare-and-set in ``storage.runs``; a lost one returns False and
changes nothing (ARCHITECTURE.md decision 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from engine.state import RUN_ACTIVE, RunStatus, StepStatus, run_sources, step_sources
from storage import runs as store
from storage.models import Run, StepRun

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


async def request_cancel(run: Run, by: str, conn: BaseDBAsyncClient) -> bool:
    return await store.request_cancel(run, by, ACTIVE_RUN_VALUES, conn)


async def active_run_ids() -> list[int]:
    return await store.active_run_ids(ACTIVE_RUN_VALUES)
