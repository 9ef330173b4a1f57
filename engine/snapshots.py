"""Snapshots: the engine's immutable view of stored rows (what events carry)."""

from __future__ import annotations

from collections.abc import Iterable

from engine.events import RunSnapshot, StepSnapshot
from engine.state import RunStatus, step_status
from storage.models import Run, StepRun


def step_snapshot(step: StepRun) -> StepSnapshot:
    """The row's snapshot, kept on the row's object until its ``version`` moves.

    A run's snapshot (each event carries one) holds every step, a few times
    per step boundary. Every change to a row's object goes through
    ``storage.runs``, which moves the object's version with it.
    """
    kept = step.__dict__.get("_snapshot")
    if kept is not None and kept[0] == step.version:
        return kept[1]  # type: ignore[no-any-return]
    snapshot = _snapshot_of(step)
    step.__dict__["_snapshot"] = (step.version, snapshot)  # not a field: past Tortoise's setattr
    return snapshot


def _snapshot_of(step: StepRun) -> StepSnapshot:
    return StepSnapshot(
        id=step.id,
        path=step.path,
        name=step.name,
        kind=step.kind,
        status=step_status(step.status),
        started_at=step.started_at,
        finished_at=step.finished_at,
        exit_code=step.exit_code,
        reason=step.reason,
        log_tail=step.log_tail,
        external_url=step.external_url,
    )


def run_snapshot(run: Run, steps: Iterable[StepRun]) -> RunSnapshot:
    return RunSnapshot(
        id=run.id,
        pipeline=run.pipeline,
        status=RunStatus(run.status),
        parameters=dict(run.parameters),
        trigger_type=run.trigger_type,
        triggered_by=run.triggered_by,
        source=run.source,
        channel_id=run.channel_id,
        thread_ts=run.thread_ts,
        reason=run.reason,
        failed_step=run.failed_step,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        steps=tuple(step_snapshot(s) for s in steps),
        concurrency_group=run.concurrency_group,
        queued_behind=run.queued_behind,
        definition=dict(run.definition),
    )
