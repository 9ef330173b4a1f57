"""Runs and step runs: create, read, and compare-and-set status changes.

Every status change is ``UPDATE … WHERE id = ? AND status IN (…)`` and reports
whether it won (ARCHITECTURE.md decision 1). A change violates this when it
sets a status read earlier without the ``status IN`` guard.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Run, StepRun


def now() -> datetime:
    return datetime.now(UTC)


async def create_run(
    *,
    pipeline: str,
    definition: dict[str, Any],
    parameters: dict[str, str],
    steps: Iterable[tuple[str, str, str]],
    trigger_type: str,
    triggered_by: str,
    source: str,
    channel_id: str | None,
    cicd_tool_id: int | None,
    conn: BaseDBAsyncClient,
    owner: str | None = None,
    rerun_of: int | None = None,
) -> tuple[Run, list[StepRun]]:
    """Create a pending run and its pending steps (``(path, name, kind)``) in ``conn``."""
    run = await Run.create(
        pipeline=pipeline,
        definition=definition,
        parameters=parameters,
        status="pending",
        trigger_type=trigger_type,
        triggered_by=triggered_by,
        source=source,
        channel_id=channel_id,
        cicd_tool_id=cicd_tool_id,
        owner=owner,
        rerun_of=rerun_of,
        using_db=conn,
    )
    rows = [
        StepRun(run_id=run.id, path=path, position=i, name=name, kind=kind)
        for i, (path, name, kind) in enumerate(steps)
    ]
    await StepRun.bulk_create(rows, using_db=conn)
    created = await StepRun.filter(run_id=run.id).using_db(conn).order_by("position")
    return run, list(created)


async def read_run(run_id: int, conn: BaseDBAsyncClient | None = None) -> Run | None:
    query = Run.filter(id=run_id)
    if conn is not None:
        query = query.using_db(conn)
    return await query.first()


async def read_steps(run_id: int, conn: BaseDBAsyncClient | None = None) -> list[StepRun]:
    query = StepRun.filter(run_id=run_id).order_by("position")
    if conn is not None:
        query = query.using_db(conn)
    return list(await query)


async def set_run_status(
    run: Run,
    proposed: str,
    sources: Collection[str],
    conn: BaseDBAsyncClient,
    **fields: Any,
) -> bool:
    """Move ``run`` to ``proposed`` if its stored status is one of ``sources``; update ``run``."""
    changes: dict[str, Any] = {"status": proposed, **fields}
    count = await Run.filter(id=run.id, status__in=list(sources)).using_db(conn).update(**changes)
    if count:
        for key, value in changes.items():
            setattr(run, key, value)
    return bool(count)


async def set_step_status(
    step: StepRun,
    proposed: str,
    sources: Collection[str],
    conn: BaseDBAsyncClient,
    **fields: Any,
) -> bool:
    """Move ``step`` to ``proposed`` if its stored status is one of ``sources``."""
    changes: dict[str, Any] = {"status": proposed, **fields}
    count = await (
        StepRun.filter(id=step.id, status__in=list(sources)).using_db(conn).update(**changes)
    )
    if count:
        for key, value in changes.items():
            setattr(step, key, value)
    return bool(count)


async def update_step_fields(step: StepRun, conn: BaseDBAsyncClient, **fields: Any) -> None:
    """Change a step's non-status fields (external ids, log)."""
    await StepRun.filter(id=step.id).using_db(conn).update(**fields)
    for key, value in fields.items():
        setattr(step, key, value)


async def request_cancel(
    run: Run, by: str, active: Collection[str], conn: BaseDBAsyncClient
) -> bool:
    """Mark an active run as cancelling, once: the second request finds it marked."""
    stamp = now()
    count = await (
        Run.filter(id=run.id, status__in=list(active), cancel_requested_at__isnull=True)
        .using_db(conn)
        .update(cancel_requested_at=stamp, cancel_requested_by=by)
    )
    if count:
        run.cancel_requested_at = stamp
        run.cancel_requested_by = by
    return bool(count)


async def active_run_ids(active: Collection[str]) -> list[int]:
    rows = await Run.filter(status__in=list(active)).order_by("id").values_list("id", flat=True)
    return [int(row) for row in rows]  # type: ignore[call-overload]


async def set_thread(run_id: int, channel_id: str, thread_ts: str) -> None:
    await Run.filter(id=run_id, thread_ts__isnull=True).update(
        channel_id=channel_id, thread_ts=thread_ts
    )
