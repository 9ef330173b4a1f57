"""Two parties end the same step or run at once: exactly one wins and one event is sent.

Every status change is a compare-and-set on the stored status; these tests fail
if a change is made without that guard (a late finish moving a finished step, two
cancel requests both recorded).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tortoise import connections

from engine.errors import Conflict
from engine.events import CancelRequested, StepFinished
from engine.executors.base import StepOutcome
from engine.runner import CancelResult, RunRequest
from engine.state import RunStatus, StepStatus
from engine.transitions import move_run, move_step, request_cancel
from storage.models import Run, StepRun
from tests.engine_harness import CLI, Recorder, engine_on
from tests.helpers import eventually, write_pipeline

GATED = """\
name: gated
steps:
  - name: gate
    approval: {approvers: [U222]}
  - name: after
    run: echo after
"""


async def _waiting_gate(core: object, run_id: int) -> StepRun:
    async def gate() -> StepRun | None:
        step = await StepRun.get(run_id=run_id, name="gate")
        return step if step.status == StepStatus.WAITING_APPROVAL else None

    found = await eventually(gate, timeout=20)
    assert found is not None
    return found


async def test_two_finishes_of_one_step_at_once_one_wins_with_one_event(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", GATED)
    async with engine_on(database_url, pipelines_dir) as core:
        recorder = Recorder(core)
        run = await core.engine.start_run(RunRequest("gated", {}, CLI))
        gate = await _waiting_gate(core, run.id)
        outcomes = [
            StepOutcome(StepStatus.SUCCESS),
            StepOutcome(StepStatus.FAILED, reason="exited with 1"),
        ]
        results = await asyncio.gather(
            *(core.engine.finish_step(run.id, gate.id, outcome) for outcome in outcomes)
        )
        assert sorted(results) == [False, True]
        winner = outcomes[results.index(True)]
        done = await core.engine.wait_finished(run.id, timeout=20)
        stored = await StepRun.get(id=gate.id)
        assert (stored.status, stored.reason) == (winner.status, winner.reason)
        assert done.steps[0].status == winner.status
        gate_ends = [
            e for e in recorder.events if isinstance(e, StepFinished) and e.step.name == "gate"
        ]
        assert [e.step.status for e in gate_ends] == [winner.status]
        ends_before = sum(isinstance(e, StepFinished) for e in recorder.events)
        # Long after: a finish for a step that ended changes nothing and says nothing.
        late = StepOutcome(StepStatus.FAILED, reason="too late")
        assert await core.engine.finish_step(run.id, gate.id, late) is False
        stored = await StepRun.get(id=gate.id)
        assert (stored.status, stored.reason) == (winner.status, winner.reason)
        assert sum(isinstance(e, StepFinished) for e in recorder.events) == ends_before


async def test_two_cancels_at_once_one_is_recorded_with_one_event(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", GATED)
    async with engine_on(database_url, pipelines_dir) as core:
        recorder = Recorder(core)
        run = await core.engine.start_run(RunRequest("gated", {}, CLI))
        await _waiting_gate(core, run.id)
        results = await asyncio.gather(
            core.engine.cancel_run(run.id, CLI),
            core.engine.cancel_run(run.id, CLI),
            return_exceptions=True,
        )
        # One wins; the other finds it marked, or (when the winner already ended the
        # run) ended: the same answer a second Cancel gets from the API (409).
        assert results.count(CancelResult.REQUESTED) == 1, results
        loser = next(r for r in results if r != CancelResult.REQUESTED)
        assert loser == CancelResult.ALREADY or isinstance(loser, Conflict), results
        done = await core.engine.wait_finished(run.id, timeout=20)
        assert done.status == RunStatus.CANCELLED
        assert sum(isinstance(e, CancelRequested) for e in recorder.events) == 1


async def test_stale_copies_lose_the_compare_and_set(
    database_url: str, pipelines_dir: Path
) -> None:
    """What two replicas see: each read the row before the other changed it."""
    write_pipeline(pipelines_dir, "gated", GATED)
    async with engine_on(database_url, pipelines_dir) as core:
        first = await core.engine.start_run(RunRequest("gated", {}, CLI))
        second = await core.engine.start_run(RunRequest("gated", {}, CLI))
        await _waiting_gate(core, first.id)
        await _waiting_gate(core, second.id)
        conn = connections.get("default")

        steps = [await StepRun.get(run_id=first.id, name="gate") for _ in range(2)]
        assert await move_step(steps[0], StepStatus.SUCCESS, conn) is True
        assert await move_step(steps[1], StepStatus.CANCELLED, conn) is False
        assert (await StepRun.get(id=steps[0].id)).status == "success"
        assert steps[1].status == "waiting_approval"  # the loser's copy is left as it was read

        copies = [await Run.get(id=first.id) for _ in range(2)]
        assert await request_cancel(copies[0], "U111", conn) is True
        assert await request_cancel(copies[1], "U222", conn) is False
        assert (await Run.get(id=first.id)).cancel_requested_by == "U111"

        runs = [await Run.get(id=second.id) for _ in range(3)]
        assert await move_run(runs[0], RunStatus.FAILED, conn, reason="first") is True
        assert await move_run(runs[1], RunStatus.CANCELLED, conn) is False
        # A run that ended takes no cancel request, whatever the copy says.
        assert await request_cancel(runs[2], "U999", conn) is False
        stored = await Run.get(id=second.id)
        assert (stored.status, stored.reason) == ("failed", "first")
        assert (stored.cancel_requested_at, stored.cancel_requested_by) == (None, None)


async def test_a_move_with_no_allowed_source_changes_nothing(
    database_url: str, pipelines_dir: Path
) -> None:
    # E.g. "end this step if it is still pending" asked for a status a pending step
    # may not move to: no status may be the source, so it loses without a query error.
    write_pipeline(pipelines_dir, "gated", GATED)
    async with engine_on(database_url, pipelines_dir):
        run = await Run.create(pipeline="gated", definition={}, parameters={}, status="pending")
        step = await StepRun.create(run_id=run.id, path="0", position=0, name="gate", kind="run")
        conn = connections.get("default")
        assert not await move_step(step, StepStatus.SUCCESS, conn, expected=[StepStatus.PENDING])
        assert (await StepRun.get(id=step.id)).status == StepStatus.PENDING
