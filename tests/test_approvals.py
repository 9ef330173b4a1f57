"""Approval gates in the engine: who counts, how many, reject, races, timeout, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.approvals import APPROVE, REJECT, Outcome, decide
from engine.errors import Conflict, NotAllowed
from engine.permissions import Actor
from engine.runner import RunRequest
from engine.state import RunStatus, StepStatus
from storage.models import Approval, ApprovalDecision, StepRun
from tests.engine_harness import engine_on
from tests.helpers import eventually, write_pipeline

STARTER = Actor("U_STARTER", "C1")


def gated(tmp_path: Path, *, required: int = 1, self_ok: bool = False, timeout: str = "") -> str:
    marker = tmp_path / "deployed"
    return f"""\
name: gated
steps:
  - name: build
    run: echo built
  - name: Approve production
    approval:
      approvers: [U_A, U_B, U_STARTER]
      required: {required}
      allow_self_approval: {"true" if self_ok else "false"}
      {timeout}
  - name: deploy
    run: echo deployed >> {marker}
"""


async def waiting(core, run_id: int) -> None:  # type: ignore[no-untyped-def]
    async def status() -> str:
        return (await core.engine.snapshot(run_id)).status

    await eventually(status, lambda s: s == RunStatus.WAITING_APPROVAL)


async def test_an_approver_releases_the_gate(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path))
    async with engine_on(database_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER, source="api"))
        await waiting(core, run.id)
        result = await decide(core.engine, run.id, Actor("U_A"), APPROVE, "ship it")
        assert result.outcome == Outcome.APPROVED
        final = await core.engine.wait_finished(run.id, timeout=20)
        approval = await Approval.get(run_id=run.id)
        decisions = await ApprovalDecision.filter(approval_id=approval.id)
    assert final.status == RunStatus.SUCCESS
    assert (tmp_path / "deployed").read_text() == "deployed\n"
    assert approval.outcome == "approved" and approval.decided_at is not None
    assert [(d.user_id, d.decision, d.comment) for d in decisions] == [
        ("U_A", "approve", "ship it")
    ]


async def test_non_approvers_and_the_starter_are_refused_and_change_nothing(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path))
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        with pytest.raises(NotAllowed) as stranger:
            await decide(core.engine, run.id, Actor("U_X"), APPROVE)
        assert "Only <@U_A>, <@U_B>, <@U_STARTER> can decide" in str(stranger.value)
        with pytest.raises(NotAllowed) as starter:
            await decide(core.engine, run.id, STARTER, APPROVE)
        assert "cannot approve it yourself" in str(starter.value)
        assert await ApprovalDecision.all().count() == 0
        assert (await core.engine.snapshot(run.id)).status == RunStatus.WAITING_APPROVAL
        await core.engine.cancel_run(run.id, STARTER)


async def test_self_approval_when_allowed(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, self_ok=True))
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        await decide(core.engine, run.id, STARTER, APPROVE)
        assert (await core.engine.wait_finished(run.id, timeout=20)).status == RunStatus.SUCCESS


async def test_two_distinct_approvals_when_two_are_required(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, required=2))
    async with engine_on(database_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        first = await decide(core.engine, run.id, Actor("U_A"), APPROVE)
        assert first.outcome is None and first.approvals == 1
        with pytest.raises(Conflict):
            await decide(core.engine, run.id, Actor("U_A"), APPROVE)  # the same person again
        assert (await core.engine.snapshot(run.id)).status == RunStatus.WAITING_APPROVAL
        second = await decide(core.engine, run.id, Actor("U_B"), APPROVE)
        assert second.outcome == Outcome.APPROVED
        assert (await core.engine.wait_finished(run.id, timeout=20)).status == RunStatus.SUCCESS


async def test_one_reject_ends_the_run_and_later_steps_never_run(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, required=2))
    async with engine_on(database_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        await decide(core.engine, run.id, Actor("U_A"), APPROVE)
        await decide(core.engine, run.id, Actor("U_B"), REJECT, "not today")
        final = await core.engine.wait_finished(run.id, timeout=20)
        with pytest.raises(Conflict) as late:
            await decide(core.engine, run.id, Actor("U_A"), APPROVE)
    assert final.status == RunStatus.FAILED
    assert final.reason == "rejected by @U_B: not today"
    assert final.failed_step == "Approve production"
    assert [s.status for s in final.steps] == [
        StepStatus.SUCCESS,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
    ]
    assert not (tmp_path / "deployed").exists()
    assert "already decided" in str(late.value)


async def test_concurrent_approvals_run_the_next_step_once(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path))
    async with engine_on(database_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        results = await asyncio.gather(
            *(decide(core.engine, run.id, Actor(user), APPROVE) for user in ("U_A", "U_B", "U_A")),
            return_exceptions=True,
        )
        final = await core.engine.wait_finished(run.id, timeout=20)
        deploy = await StepRun.get(run_id=run.id, name="deploy")
    settled = [r for r in results if not isinstance(r, BaseException) and r.outcome is not None]
    assert len(settled) == 1
    assert final.status == RunStatus.SUCCESS
    assert deploy.attempt == 1
    assert (tmp_path / "deployed").read_text() == "deployed\n"


async def test_an_unanswered_gate_times_out(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, timeout="timeout: 0.5"))
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        final = await core.engine.wait_finished(run.id, timeout=20)
        with pytest.raises(Conflict):
            await decide(core.engine, run.id, Actor("U_A"), APPROVE)
    assert final.status == RunStatus.FAILED
    assert final.reason == "approval timed out"
    assert not (tmp_path / "deployed").exists()


async def test_a_restart_keeps_the_gate_and_it_can_still_be_approved(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, timeout="timeout: 3600"))
    async with engine_on(database_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
    async with engine_on(database_url, pipelines_dir) as core:
        assert await core.engine.recover() == 1
        assert (await core.engine.snapshot(run.id)).status == RunStatus.WAITING_APPROVAL
        await decide(core.engine, run.id, Actor("U_B"), APPROVE)
        final = await core.engine.wait_finished(run.id, timeout=20)
    assert final.status == RunStatus.SUCCESS


async def test_a_gate_that_expired_while_the_service_was_down_fails_on_restart(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, timeout="timeout: 0.3"))
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
    await asyncio.sleep(0.5)  # the service is down past the gate's expiry
    async with engine_on(sqlite_url, pipelines_dir) as core:
        await core.engine.recover()
        final = await core.engine.wait_finished(run.id, timeout=20)
    assert final.status == RunStatus.FAILED
    assert final.reason == "approval timed out"


async def test_cancel_while_waiting_for_approval(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path))
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        await waiting(core, run.id)
        await core.engine.cancel_run(run.id, Actor("U_B"))  # an approver may cancel
        final = await core.engine.wait_finished(run.id, timeout=20)
    assert final.status == RunStatus.CANCELLED
    assert [s.status for s in final.steps] == ["success", "cancelled", "skipped"]


async def test_a_gate_that_ends_early_leaves_no_timer_behind(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    """Approved, rejected or cancelled before its timeout: the gate's timer goes with it."""
    write_pipeline(pipelines_dir, "gated", gated(tmp_path, timeout="timeout: 3600"))
    async with engine_on(database_url, pipelines_dir) as core:
        runs = [
            await core.engine.start_run(RunRequest("gated", {}, STARTER, source="api"))
            for _ in range(3)
        ]
        for run in runs:
            await waiting(core, run.id)
        assert core.approvals.armed == 3
        approved, rejected, cancelled = (run.id for run in runs)
        await decide(core.engine, approved, Actor("U_A"), APPROVE)
        await decide(core.engine, rejected, Actor("U_A"), REJECT)
        await core.engine.cancel_run(cancelled, Actor("U_B"))
        ended = [
            await core.engine.wait_finished(i, timeout=20) for i in (approved, rejected, cancelled)
        ]
        armed = core.approvals.armed
        gates = {
            a.run_id: a.outcome for a in await Approval.filter(run_id__in=[r.id for r in runs])
        }
    assert [run.status for run in ended] == [
        RunStatus.SUCCESS,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
    ]
    assert armed == 0
    # The cancelled gate stays undecided: no timer is left to mark it timed out later.
    assert gates == {approved: Outcome.APPROVED, rejected: Outcome.REJECTED, cancelled: None}
