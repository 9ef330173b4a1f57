"""Per-run workspaces: one folder per run, shared by its steps, cleaned up after it ends."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

from engine.runner import RunRequest
from engine.state import RunStatus
from storage.models import Run, StepRun
from storage.runs import now
from tests.engine_harness import CLI, engine_on, run_to_end
from tests.helpers import eventually, write_pipeline


async def exists(path: Path) -> bool:
    return path.exists()


def sharing(marker: Path) -> str:
    return f"""\
name: share
steps:
  - name: write
    run: |
      echo "run $ANSFLOW_RUN_ID" > ./out.txt
      for i in $(seq 1 600); do [ -f "{marker}" ] && break; sleep 0.05; done
  - name: read
    run: cat ./out.txt; pwd; echo "$ANSFLOW_WORKSPACE"
"""


async def test_two_concurrent_runs_each_read_their_own_file(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    root = tmp_path / "spaces"
    write_pipeline(pipelines_dir, "share", sharing(marker))
    env = {"ANSFLOW_WORKSPACES_DIR": str(root)}
    async with engine_on(database_url, pipelines_dir, **env) as core:
        first = await core.engine.start_run(RunRequest("share", {}, CLI))
        second = await core.engine.start_run(RunRequest("share", {}, CLI))
        for run_id in (first.id, second.id):
            await eventually(lambda r=run_id: exists(root / f"run-{r}" / "out.txt"))
        modes = {r: stat.S_IMODE((root / f"run-{r}").stat().st_mode) for r in (first.id, second.id)}
        marker.touch()
        ends = [await core.engine.wait_finished(r.id, timeout=30) for r in (first, second)]
        logs = {
            s.run_id: s.log
            for s in await StepRun.filter(name="read", run_id__in=[first.id, second.id])
        }
    assert [e.status for e in ends] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
    for run_id in (first.id, second.id):
        where = str(root / f"run-{run_id}")
        assert logs[run_id].splitlines() == [f"run {run_id}", where, where]
        assert modes[run_id] == 0o700


async def test_keep_zero_removes_a_runs_workspace_when_it_ends(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "spaces"
    write_pipeline(
        pipelines_dir, "touch", "name: touch\nsteps:\n  - name: t\n    run: touch made\n"
    )
    env = {"ANSFLOW_WORKSPACES_DIR": str(root), "ANSFLOW_WORKSPACES_KEEP": "0"}
    async with engine_on(sqlite_url, pipelines_dir, **env) as core:
        run = await run_to_end(core, "touch")
        assert run.status == RunStatus.SUCCESS
        await eventually(lambda: exists(root / f"run-{run.id}"), lambda e: not e)


async def test_the_sweep_removes_only_finished_runs_older_than_keep(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    root = tmp_path / "spaces"
    write_pipeline(
        pipelines_dir, "quick", "name: quick\nsteps:\n  - name: q\n    run: touch made\n"
    )
    write_pipeline(
        pipelines_dir, "long",
        "name: long\nsteps:\n  - name: l\n"
        f"    run: for i in $(seq 1 600); do [ -f '{marker}' ] && break; sleep 0.05; done\n",
    )  # fmt: skip
    env = {"ANSFLOW_WORKSPACES_DIR": str(root), "ANSFLOW_WORKSPACES_KEEP": "3600"}
    async with engine_on(sqlite_url, pipelines_dir, **env) as core:
        old = await run_to_end(core, "quick")
        recent = await run_to_end(core, "quick")
        running = await core.engine.start_run(RunRequest("long", {}, CLI))
        await eventually(lambda: exists(root / f"run-{running.id}"))
        # One finished two hours ago; the running run is old too, but still running.
        two_hours_ago = now() - timedelta(hours=2)
        await Run.filter(id=old.id).update(finished_at=two_hours_ago)
        await Run.filter(id=running.id).update(created_at=two_hours_ago)
        removed = await core.workspaces.sweep()
        left = sorted(p.name for p in root.iterdir())
        marker.touch()
        await core.engine.wait_finished(running.id, timeout=30)
    assert removed == 1
    assert left == sorted([f"run-{recent.id}", f"run-{running.id}"])


async def test_a_running_run_keeps_its_workspace_even_with_keep_zero(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    root = tmp_path / "spaces"
    write_pipeline(
        pipelines_dir, "long",
        "name: long\nsteps:\n  - name: one\n"
        f"    run: for i in $(seq 1 600); do [ -f '{marker}' ] && break; sleep 0.05; done\n"
        "  - name: two\n    run: echo still here > two.txt\n",
    )  # fmt: skip
    env = {"ANSFLOW_WORKSPACES_DIR": str(root), "ANSFLOW_WORKSPACES_KEEP": "0"}
    async with engine_on(sqlite_url, pipelines_dir, **env) as core:
        run = await core.engine.start_run(RunRequest("long", {}, CLI))
        await eventually(lambda: exists(root / f"run-{run.id}"))
        assert await core.workspaces.sweep() == 0
        assert (root / f"run-{run.id}").is_dir()
        marker.touch()
        final = await core.engine.wait_finished(run.id, timeout=30)
    assert final.status == RunStatus.SUCCESS


def test_settings_have_the_workspace_defaults() -> None:
    from ansflow.settings import load_settings

    settings = load_settings({})
    assert settings.workspaces_dir == Path("./workspaces")
    assert settings.workspaces_keep == 86400
    assert load_settings({"ANSFLOW_WORKSPACES_KEEP": "0"}).workspaces_keep == 0


def test_an_invalid_keep_names_the_variable() -> None:
    import pytest

    from ansflow.settings import SettingsError, load_settings

    for value in ("-1", "soon"):
        with pytest.raises(SettingsError, match="ANSFLOW_WORKSPACES_KEEP"):
            load_settings({"ANSFLOW_WORKSPACES_KEEP": value})


async def test_a_workspace_that_cannot_be_made_fails_the_step_with_the_reason(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "spaces"
    root.write_text("a file where the workspaces folder should be\n")
    write_pipeline(
        pipelines_dir, "touch", "name: touch\nsteps:\n  - name: t\n    run: touch made\n"
    )
    async with engine_on(sqlite_url, pipelines_dir, ANSFLOW_WORKSPACES_DIR=str(root)) as core:
        run = await run_to_end(core, "touch")
        step = await StepRun.get(run_id=run.id, name="t")
    assert run.status == RunStatus.FAILED
    assert step.status == "failed"
    assert step.reason is not None
    assert step.reason.startswith("could not create the run's workspace: ")
    assert not (tmp_path / "made").exists()
