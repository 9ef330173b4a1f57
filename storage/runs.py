"""Runs and step runs: create, read, and compare-and-set status changes.

Every status change is ``UPDATE … WHERE id = ? AND status IN (…)`` and reports
whether it won (ARCHITECTURE.md decision 1). A change violates this when it
sets a status read earlier without the ``status IN`` guard.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from storage import sql
from storage.models import Run, StepRun
from storage.round_writes import Change, Check, RoundWrites


def now() -> datetime:
    return datetime.now(UTC)


async def create_run(
    *, steps: Iterable[tuple[str, str, str]], conn: BaseDBAsyncClient, **fields: Any
) -> tuple[Run, list[StepRun]]:
    """Create a run (``fields``: those of :func:`_new_rows`) and its pending steps
    (``(path, name, kind)``) in ``conn``.

    The run is pending, or already running from ``started_at`` when its creator
    starts it in the same transaction (a new row: no one else can have moved it).
    """
    run, rows = _new_rows(steps=steps, **fields)
    await sql.insert_with_children(conn, run, rows, "run_id")
    return run, rows


# Steps a run may have to be inserted in one statement with its first round (far
# below PostgreSQL's 32,767 values a statement); a longer one is created in a transaction.
ONE_STATEMENT_STEPS = sql.INSERT_CHUNK


async def reserve_run(
    *,
    steps: Iterable[tuple[str, str, str]],
    writes: RoundWrites,
    started_at: datetime,
    **fields: Any,
) -> tuple[Run, list[StepRun]]:
    """:func:`create_run` as part of a round that goes as one statement: the run
    (already running from ``started_at``) and its steps get their ids now, and are
    inserted with the round's writes, the changes the round makes to them
    included (``RoundWrites.insert_family``)."""
    run, rows = _new_rows(steps=steps, started_at=started_at, **fields)
    if len(rows) > ONE_STATEMENT_STEPS:
        raise ValueError(f"{len(rows)} steps are too many for one statement")
    run.created_at = started_at  # told of (snapshots) before it is stored
    run_id, step_ids = await sql.reserve_ids(writes.conn, Run, StepRun, len(rows))
    run.id = run_id
    for row, step_id in zip(rows, step_ids, strict=True):
        row.id = step_id
        row.run_id = run_id
    writes.insert_family(run, list(rows))
    return run, rows


def _new_rows(
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
    owner: str | None = None,
    rerun_of: int | None = None,
    started_at: datetime | None = None,
) -> tuple[Run, list[StepRun]]:
    run = Run(
        pipeline=pipeline,
        definition=definition,
        parameters=parameters,
        status="pending" if started_at is None else "running",
        started_at=started_at,
        trigger_type=trigger_type,
        triggered_by=triggered_by,
        source=source,
        channel_id=channel_id,
        cicd_tool_id=cicd_tool_id,
        owner=owner,
        rerun_of=rerun_of,
    )
    # The steps' run_id is the run's new id, set as they are stored.
    rows = [
        StepRun(run_id=0, path=path, position=i, name=name, kind=kind)
        for i, (path, name, kind) in enumerate(steps)
    ]
    return run, rows


def _conn(conn: BaseDBAsyncClient | None) -> BaseDBAsyncClient:
    return conn if conn is not None else connections.get("default")


async def read_run(run_id: int, conn: BaseDBAsyncClient | None = None) -> Run | None:
    found = await sql.select(_conn(conn), Run, '"id"=?', [run_id])
    return found[0] if found else None


async def read_steps(run_id: int, conn: BaseDBAsyncClient | None = None) -> list[StepRun]:
    return await sql.select(_conn(conn), StepRun, '"run_id"=?', [run_id], '"position"')


async def read_run_and_steps(
    run_id: int,
    conn: BaseDBAsyncClient | None = None,
    *,
    with_logs: bool = False,
    known: Sequence[StepRun] | None = None,
) -> tuple[Run, list[StepRun]] | None:
    """The run and its steps (by position).

    Without ``with_logs`` the steps' whole logs (up to a megabyte each) are not
    read, and their rows have no ``log``: the engine reads the run at every
    step boundary, and needs only the tails.

    ``known`` are step rows read (and kept up to date) earlier, without logs. Of
    those, the ones whose stored ``version`` has not moved are returned as they
    are; only new or changed rows are read whole. That spares the engine
    decoding every step of a long pipeline at each boundary. Another process's
    write bumps ``version`` too, so a kept row is never mistaken for current.
    A run of fewer than ``KEEP_FROM`` steps is read whole all the same: one
    statement (one round trip to PostgreSQL) instead of two or three.
    """
    leave_out = () if with_logs else ("log",)
    if known is None or with_logs or len(known) < KEEP_FROM:
        return await _read_whole(run_id, conn, leave_out)
    # Two small statements: one row of the run, two numbers per step (a join
    # would repeat the run's columns on every step's row).
    run = await read_run(run_id, conn)
    if run is None:
        return None
    versions = await sql.select_columns(
        _conn(conn), StepRun, ("id", "version"), '"run_id"=?', [run_id], '"position"'
    )
    kept = {step.id: step for step in known}
    stale = [step_id for step_id, version in versions if _kept_version(kept, step_id) != version]
    if len(stale) > MAX_REREAD:
        return await _read_whole(run_id, conn, leave_out)
    fresh = {
        step.id: step for step in await sql.select_by_ids(_conn(conn), StepRun, stale, leave_out)
    }
    steps: list[StepRun] = []
    for step_id, _ in versions:
        step = fresh.get(step_id) or kept.get(step_id)
        if step is None:
            return None  # deleted between the two reads (the run with it)
        steps.append(step)
    return run, steps


# Kept rows are worth checking from this many steps on; fewer are read whole.
KEEP_FROM = 8
# Above this many new or changed rows, all of the run's steps are read in one go.
MAX_REREAD = 16


def _kept_version(kept: dict[int, StepRun], step_id: int) -> int | None:
    step = kept.get(step_id)
    return None if step is None else step.version


async def _read_whole(
    run_id: int, conn: BaseDBAsyncClient | None, leave_out: tuple[str, ...]
) -> tuple[Run, list[StepRun]] | None:
    """The run and all its steps in one statement (a join)."""
    return await sql.select_with_children(
        _conn(conn), Run, StepRun, "run_id", "position", run_id, leave_out
    )


_RUN_UNCHANGED = 'SELECT 1 FROM "run" WHERE "id"=? AND "version"=?'
_STEPS_UNCHANGED = (
    'SELECT 1 WHERE (SELECT coalesce(sum("version"), 0) FROM "step_run" WHERE "run_id"=?) = ?'
)


def unchanged(run: Run, steps: Sequence[StepRun]) -> list[Check]:
    """Checks that the run's row and its steps' are still as held (each row's
    ``version`` only goes up, so an unchanged sum means unchanged rows); the
    run's row is locked until the round commits, so no one moves it meanwhile."""
    return [
        Check(_RUN_UNCHANGED, (run.id, run.version), lock=True),
        Check(_STEPS_UNCHANGED, (run.id, sum(step.version for step in steps))),
    ]


def _status_guard(sources: Collection[str]) -> str:
    return f'"id"=? AND "status" IN ({",".join("?" * len(sources))})'


async def set_run_status(
    run: Run,
    proposed: str,
    sources: Collection[str],
    conn: BaseDBAsyncClient,
    **fields: Any,
) -> bool:
    """Move ``run`` to ``proposed`` if its stored status is one of ``sources``; update ``run``."""
    changes: dict[str, Any] = {"status": proposed, **fields}
    guard = list(sources)
    if not guard:
        return False  # no status it may move from: nothing can win
    count = await sql.update(
        conn, Run, changes, _status_guard(guard), [run.id, *guard], counter="version"
    )
    if count:
        for key, value in changes.items():
            setattr(run, key, value)
        run.version += 1
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
    guard = list(sources)
    if not guard:
        return False  # no status it may move from: nothing can win
    count = await sql.update(
        conn, StepRun, changes, _status_guard(guard), [step.id, *guard], counter="version"
    )
    if count:
        for key, value in changes.items():
            setattr(step, key, value)
        step.version += 1
    return bool(count)


def queue_run_status(
    writes: RoundWrites, run: Run, proposed: str, sources: Collection[str], **fields: Any
) -> bool:
    """Queue moving ``run`` to ``proposed`` from one of ``sources`` in a round; update ``run``.

    False, queueing nothing, when ``run`` as held is in none of them (it moved on:
    the round would lose). The round checks every queued change as it ends.
    """
    guard = list(sources)
    if run.status not in guard:
        return False
    changes: dict[str, Any] = {"status": proposed, **fields}
    where = _status_guard(guard)
    writes.add(Change(Run, run.id, changes, where, [run.id, *guard], counter="version"))
    for key, value in changes.items():
        setattr(run, key, value)
    run.version += 1
    return True


def queue_step_status(
    writes: RoundWrites, step: StepRun, proposed: str, sources: Collection[str], **fields: Any
) -> bool:
    """:func:`queue_run_status` for a step (its ``version`` moves with it)."""
    guard = list(sources)
    if step.status not in guard:
        return False
    changes: dict[str, Any] = {"status": proposed, **fields}
    where = _status_guard(guard)
    writes.add(Change(StepRun, step.id, changes, where, [step.id, *guard], counter="version"))
    for key, value in changes.items():
        setattr(step, key, value)
    step.version += 1
    return True


async def write_step_fields(
    step_id: int, conn: BaseDBAsyncClient | None = None, **fields: Any
) -> bool:
    """Change a step's non-status fields (external ids, log) by id; True if it exists."""
    count = await sql.update(_conn(conn), StepRun, fields, '"id"=?', [step_id], counter="version")
    return bool(count)


async def update_step_fields(step: StepRun, conn: BaseDBAsyncClient, **fields: Any) -> None:
    """Change a step's non-status fields (external ids, log).

    The object's version moves with its fields (a snapshot kept on it is keyed
    by it), as the stored row's does.
    """
    await write_step_fields(step.id, conn, **fields)
    for key, value in fields.items():
        setattr(step, key, value)
    step.version += 1


async def request_cancel(
    run: Run, by: str, active: Collection[str], conn: BaseDBAsyncClient
) -> bool:
    """Mark an active run as cancelling, once: the second request finds it marked."""
    stamp = now()
    guard = list(active)
    if not guard:
        return False
    where = _status_guard(guard) + ' AND "cancel_requested_at" IS NULL'
    changes = {"cancel_requested_at": stamp, "cancel_requested_by": by}
    count = await sql.update(conn, Run, changes, where, [run.id, *guard], counter="version")
    if count:
        run.cancel_requested_at = stamp
        run.cancel_requested_by = by
        run.version += 1
    return bool(count)


async def active_run_ids(active: Collection[str]) -> list[int]:
    rows = await Run.filter(status__in=list(active)).order_by("id").values_list("id", flat=True)
    return [int(row) for row in rows]  # type: ignore[call-overload]


async def set_thread(run_id: int, channel_id: str, thread_ts: str) -> None:
    await Run.filter(id=run_id, thread_ts__isnull=True).update(
        channel_id=channel_id, thread_ts=thread_ts
    )
