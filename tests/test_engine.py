"""The engine end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidParameter, PipelineNotFound
from engine.events import StepFinished
from engine.runner import CancelResult, RunRequest
from engine.state import RunStatus, StepStatus
from storage.models import Run, StepRun
from tests.engine_harness import CLI, Recorder, engine_on, run_to_end
from tests.helpers import eventually, write_pipeline

THREE_STAGES = """\
name: build
parameters:
  version: {default: "1.0"}
steps:
  - name: first
    run: echo "first $version"
  - parallel:
      - {name: left, run: echo left}
      - {name: right, run: echo right}
  - name: last
    run: echo last
"""


async def test_sequential_and_parallel_steps_all_succeed(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "build", THREE_STAGES)
    async with engine_on(database_url, pipelines_dir) as core:
        recorder = Recorder(core)
        run = await run_to_end(core, "build", {"version": "2.5"})
        assert run.status == RunStatus.SUCCESS
        assert [(s.name, s.status) for s in run.steps] == [
            ("first", "success"),
            ("left", "success"),
            ("right", "success"),
            ("last", "success"),
        ]
        assert run.steps[0].log_tail == "first 2.5"
        assert run.started_at is not None and run.finished_at is not None
        # Three stages of real processes ran one after the other.
        assert run.duration == (run.finished_at - run.started_at).total_seconds()
        assert 0 < run.duration < 30
        types = recorder.types()
        assert types[0] == "run.started" and types[-1] == "run.finished"
        assert types.count("step.started") == 4 and types.count("step.finished") == 4
        # The last stage starts only after both parallel steps ended.
        finished_order = [
            e.step.name for e in recorder.events if isinstance(e, StepFinished) and e.step
        ]
        assert finished_order.index("last") == 3


async def test_a_failure_skips_later_steps_and_names_the_step(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    write_pipeline(
        pipelines_dir,
        "fails",
        f"""\
name: fails
steps:
  - name: compile
    run: 'echo "error: it broke" >&2; exit 3'
  - name: after
    run: touch {marker}
""",
    )
    async with engine_on(database_url, pipelines_dir) as core:
        run = await run_to_end(core, "fails")
    assert run.status == RunStatus.FAILED
    assert run.failed_step == "compile"
    assert run.reason == "exited with 3"
    assert [s.status for s in run.steps] == [StepStatus.FAILED, StepStatus.SKIPPED]
    assert run.steps[0].exit_code == 3
    assert "error: it broke" in run.steps[0].log_tail
    assert not marker.exists()


async def test_cancel_kills_the_running_step_and_skips_the_rest(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    write_pipeline(
        pipelines_dir,
        "slow",
        f"""\
name: slow
steps:
  - name: wait
    run: sleep 300 & echo $! > {pidfile}; wait
  - name: never
    run: echo never
""",
    )
    async with engine_on(database_url, pipelines_dir) as core:
        started = await core.engine.start_run(RunRequest("slow", {}, CLI))
        await eventually(lambda: _exists(pidfile))
        child = int(pidfile.read_text())
        assert await core.engine.cancel_run(started.id, CLI) == CancelResult.REQUESTED
        assert await core.engine.cancel_run(started.id, CLI) == CancelResult.ALREADY
        run = await core.engine.wait_finished(started.id, timeout=20)
        assert run.status == RunStatus.CANCELLED
        assert [s.status for s in run.steps] == [StepStatus.CANCELLED, StepStatus.SKIPPED]
        assert not _alive(child)
        with pytest.raises(Conflict):
            await core.engine.cancel_run(started.id, CLI)


async def test_bad_requests_create_nothing(database_url: str, pipelines_dir: Path) -> None:
    write_pipeline(
        pipelines_dir, "build", THREE_STAGES.replace('{default: "1.0"}', "{choices: [a]}")
    )
    async with engine_on(database_url, pipelines_dir) as core:
        with pytest.raises(PipelineNotFound) as missing:
            await core.engine.start_run(RunRequest("biuld", {}, CLI))
        assert "Did you mean build?" in str(missing.value)
        with pytest.raises(InvalidParameter):
            await core.engine.start_run(RunRequest("build", {"version": "b"}, CLI))
        assert await Run.all().count() == 0
        assert await StepRun.all().count() == 0


async def test_recovery_fails_a_step_left_running_and_ends_the_run(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "build", THREE_STAGES)
    async with engine_on(database_url, pipelines_dir) as core:
        # What a killed process leaves behind: the run running, its first step running.
        run = await core.engine.start_run(RunRequest("build", {}, CLI))
        await core.engine.wait_finished(run.id, timeout=20)
        await Run.filter(id=run.id).update(status="running", finished_at=None)
        await StepRun.filter(run_id=run.id, path="0").update(status="running", finished_at=None)
        await StepRun.filter(run_id=run.id).exclude(path="0").update(status="pending")
    async with engine_on(database_url, pipelines_dir) as core:
        assert await core.engine.recover() == 1
        after = await core.engine.wait_finished(run.id, timeout=20)
    assert after.status == RunStatus.FAILED
    assert after.reason == "interrupted by restart"
    assert [s.status for s in after.steps] == ["failed", "skipped", "skipped", "skipped"]


async def test_retry_on_restart_runs_the_step_again(database_url: str, pipelines_dir: Path) -> None:
    write_pipeline(
        pipelines_dir,
        "idem",
        "name: idem\nsteps:\n  - name: sync\n    run: echo again\n    retry_on_restart: true\n",
    )
    async with engine_on(database_url, pipelines_dir) as core:
        run = await run_to_end(core, "idem")
        await Run.filter(id=run.id).update(status="running", finished_at=None)
        await StepRun.filter(run_id=run.id).update(status="running", finished_at=None)
    async with engine_on(database_url, pipelines_dir) as core:
        await core.engine.recover()
        after = await core.engine.wait_finished(run.id, timeout=20)
        step = await StepRun.get(run_id=run.id)
    assert after.status == RunStatus.SUCCESS
    assert step.attempt == 1 and step.log_tail == "again"


async def _exists(path: Path) -> bool:
    return path.exists() and path.read_text().strip() != ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"
