"""Concurrency groups in one engine, on SQLite and PostgreSQL: queue, cancel_previous, hand-on."""

from __future__ import annotations

import itertools
from pathlib import Path

from engine.runner import RunRequest
from engine.state import RunStatus
from storage.models import ConcurrencyGroup, Run
from storage.runs import now
from tests.engine_harness import CLI, engine_on
from tests.helpers import eventually, make_settings, serving, write_pipeline

GATED = """\
name: deploy
parameters:
  env: {default: staging}
  gate: {required: true}
concurrency:
  group: "deploy-${env}"
  mode: MODE
steps:
  - name: wait
    run: 'n=0; while [ ! -e "$gate" ] && [ $n -lt 1500 ]; do sleep 0.02; n=$((n+1)); done'
"""


async def status_of(run_id: int) -> str:
    run = await Run.get(id=run_id)
    return run.status


async def test_queue_runs_one_at_a_time_in_creation_order(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "deploy", GATED.replace("MODE", "queue"))
    async with engine_on(database_url, pipelines_dir) as core:
        engine = core.engine
        gates = [tmp_path / f"gate{i}" for i in range(3)]
        runs = [await engine.start_run(RunRequest("deploy", {"gate": str(g)}, CLI)) for g in gates]
        other = await engine.start_run(
            RunRequest("deploy", {"gate": str(gates[0]), "env": "prod"}, CLI)
        )
        assert [r.status for r in runs] == [RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.QUEUED]
        assert other.status == RunStatus.RUNNING  # another group
        assert runs[1].queued_behind == runs[0].id and runs[2].queued_behind == runs[1].id
        # Let them go in reverse order: still each waits for the one before it.
        gates[2].touch()
        gates[1].touch()
        assert await status_of(runs[1].id) == "queued"
        gates[0].touch()
        finished = [await engine.wait_finished(r.id, timeout=30) for r in runs]
        assert [f.status for f in finished] == [RunStatus.SUCCESS] * 3
        for before, after in itertools.pairwise(finished):
            assert before.finished_at is not None and after.started_at is not None
            assert after.started_at >= before.finished_at

        async def holder() -> int | None:
            return (await ConcurrencyGroup.get(name="deploy-staging")).holder_run_id

        await eventually(holder, lambda h: h is None, timeout=5)


async def test_a_queued_run_whose_predecessor_is_cancelled_starts(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "deploy", GATED.replace("MODE", "queue"))
    async with engine_on(database_url, pipelines_dir) as core:
        engine = core.engine
        first = await engine.start_run(RunRequest("deploy", {"gate": str(tmp_path / "a")}, CLI))
        second = await engine.start_run(RunRequest("deploy", {"gate": str(tmp_path / "b")}, CLI))
        third = await engine.start_run(RunRequest("deploy", {"gate": str(tmp_path / "c")}, CLI))
        assert second.status == RunStatus.QUEUED and third.status == RunStatus.QUEUED
        # A queued run cancelled: it ends at once and the queue behind it moves up.
        await engine.cancel_run(second.id, CLI)
        assert (await engine.wait_finished(second.id, timeout=10)).status == RunStatus.CANCELLED
        assert await status_of(third.id) == "queued"
        # The running holder cancelled: its step is killed and the next run starts.
        await engine.cancel_run(first.id, CLI)
        assert (await engine.wait_finished(first.id, timeout=10)).status == RunStatus.CANCELLED
        await eventually(lambda: status_of(third.id), lambda s: s == "running", timeout=10)
        (tmp_path / "c").touch()
        assert (await engine.wait_finished(third.id, timeout=30)).status == RunStatus.SUCCESS


async def test_a_failed_holder_frees_its_group(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    failing = GATED.replace("MODE", "queue") + '  - name: check\n    run: test "$env" != broken\n'
    write_pipeline(pipelines_dir, "deploy", failing)
    gate = tmp_path / "x"
    async with engine_on(database_url, pipelines_dir) as core:
        engine = core.engine
        bad = await engine.start_run(
            RunRequest("deploy", {"gate": str(gate), "env": "broken"}, CLI)
        )
        after = await engine.start_run(
            RunRequest("deploy", {"gate": str(gate), "env": "broken"}, CLI)
        )
        assert after.status == RunStatus.QUEUED
        gate.touch()  # the holder goes on, fails, and must hand the group on
        assert (await engine.wait_finished(bad.id, timeout=10)).status == RunStatus.FAILED
        assert (await engine.wait_finished(after.id, timeout=10)).status == RunStatus.FAILED


async def test_cancel_previous_cancels_older_runs_of_the_group(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "deploy", GATED.replace("MODE", "cancel_previous"))
    async with engine_on(database_url, pipelines_dir) as core:
        engine = core.engine
        first = await engine.start_run(RunRequest("deploy", {"gate": str(tmp_path / "a")}, CLI))
        assert first.status == RunStatus.RUNNING
        newest = await engine.start_run(RunRequest("deploy", {"gate": str(tmp_path / "b")}, CLI))
        ended = await engine.wait_finished(first.id, timeout=10)
        assert ended.status == RunStatus.CANCELLED
        assert ended.reason == f"cancelled by newer run #{newest.id}"
        assert ended.steps[0].status == "cancelled"
        await eventually(lambda: status_of(newest.id), lambda s: s == "running", timeout=10)
        (tmp_path / "b").touch()
        assert (await engine.wait_finished(newest.id, timeout=30)).status == RunStatus.SUCCESS


HELD = """\
name: held
concurrency:
  group: held
steps:
  - name: sign-off
    approval: {approvers: [U111]}
  - name: after
    run: echo after
"""


async def test_the_sweep_moves_on_a_group_whose_holder_ended_without_freeing_it(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "held", HELD)
    settings = make_settings(database_url, pipelines_dir)
    async with serving(settings) as server:
        engine = server.core.engine
        holder = await engine.start_run(RunRequest("held", {}, CLI))
        waiting = await engine.start_run(RunRequest("held", {}, CLI))
        assert holder.status == RunStatus.WAITING_APPROVAL
        assert waiting.status == RunStatus.QUEUED
        # The holder ended on a replica that died before it freed the group.
        await Run.filter(id=holder.id).update(status="failed", finished_at=now())
        assert (await ConcurrencyGroup.get(name="held")).holder_run_id == holder.id
        moved = await eventually(
            lambda: status_of(waiting.id), lambda s: s == "waiting_approval", timeout=15
        )
        assert moved == "waiting_approval"
        assert (await ConcurrencyGroup.get(name="held")).holder_run_id == waiting.id
