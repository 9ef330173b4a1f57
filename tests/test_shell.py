"""Local shell steps: environment, parameters, timeout, output bounds, masking."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.executors.shell import LOG_LIMIT, _find_stale_group, _step_marks
from engine.state import RunStatus
from storage.models import StepRun
from tests.engine_harness import engine_on, run_to_end
from tests.helpers import eventually, write_pipeline

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-very-secret-bot-token",
    "SLACK_SIGNING_SECRET": "signing-secret-123456",
    "ANSFLOW_JWT_SECRET": "jwt-secret-abcdef",
    "JENKINS_API_TOKEN": "jenkins-token-zyxw",
}


async def test_a_step_sees_no_service_secret_and_its_log_shows_none(
    sqlite_url: str, pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)  # the service's own environment holds them
    write_pipeline(
        pipelines_dir,
        "leak",
        "name: leak\nsteps:\n"
        "  - name: env\n    run: env\n"
        f"  - name: echo\n    run: echo token={SECRETS['SLACK_BOT_TOKEN']}\n",
    )
    async with engine_on(sqlite_url, pipelines_dir, **SECRETS) as core:
        run = await run_to_end(core, "leak")
        logs = {s.name: s.log for s in await StepRun.filter(run_id=run.id)}
    assert run.status == RunStatus.SUCCESS
    env_lines = logs["env"].splitlines()
    names = {line.split("=", 1)[0] for line in env_lines if "=" in line}
    assert not names & set(SECRETS)
    assert {"PATH", "HOME", "ANSFLOW_RUN_ID", "ANSFLOW_PIPELINE", "ANSFLOW_STEP"} <= names
    for value in SECRETS.values():
        assert value not in logs["env"]
        assert value not in logs["echo"]
    assert logs["echo"].strip() == "token=***"


async def test_parameters_reach_the_step_only_as_environment_values(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    write_pipeline(
        pipelines_dir,
        "inject",
        "name: inject\nparameters:\n  msg: {}\nsteps:\n"
        "  - name: show\n    run: printf '%s\\n' \"$msg\"\n",
    )
    hostile = f"x; touch {canary}; $(touch {canary}) `touch {canary}`"
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "inject", {"msg": hostile})
    assert run.status == RunStatus.SUCCESS
    assert run.steps[0].log_tail == hostile
    assert not canary.exists()


async def test_timeout_kills_the_whole_process_group(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    write_pipeline(
        pipelines_dir,
        "hang",
        f"name: hang\nsteps:\n  - name: hang\n    run: sleep 300 & echo $! > {pidfile}; wait\n"
        "    timeout: 1\n",
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "hang")
    assert run.status == RunStatus.FAILED
    assert run.reason == "timed out after 1s"
    child = int(pidfile.read_text())
    await eventually(lambda: _gone(child), timeout=10)


async def test_a_background_child_that_keeps_the_pipe_open_does_not_hang_the_step(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    write_pipeline(
        pipelines_dir,
        "daemon",
        f"name: daemon\nsteps:\n  - name: fork\n    run: sleep 300 & echo $! > {pidfile}; echo started\n",
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "daemon", timeout=20)
    assert run.status == RunStatus.SUCCESS
    assert run.steps[0].log_tail == "started"
    await eventually(lambda: _gone(int(pidfile.read_text())), timeout=10)


async def test_large_output_is_bounded_and_keeps_its_end(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir,
        "noisy",
        "name: noisy\nsteps:\n  - name: noisy\n"
        "    run: yes 0123456789abcdef | head -c 5000000; echo; echo THE-END\n",
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "noisy")
        step = await StepRun.get(run_id=run.id)
    assert run.status == RunStatus.SUCCESS
    assert len(step.log) <= LOG_LIMIT
    assert step.log_dropped >= 5_000_000 - LOG_LIMIT
    assert step.log.rstrip().endswith("THE-END")
    assert step.log_tail.endswith("THE-END")
    assert len(step.log_tail) <= 3000


async def test_a_missing_command_fails_with_its_exit_code(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir,
        "missing",
        "name: missing\nsteps:\n  - name: nope\n    run: no-such-command-xyz\n",
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "missing")
    assert run.status == RunStatus.FAILED
    assert run.steps[0].exit_code == 127
    assert "not found" in run.steps[0].log_tail


async def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.split(") ", 1)[1][0] == "Z"


def test_a_left_group_is_found_by_run_pipeline_and_step_only() -> None:
    """Take-over finds a dead replica's command by its environment; another install's
    run with the same number and step name (another database) is not it."""
    env = {"PATH": "/usr/bin:/bin", "ANSFLOW_RUN_ID": "987654", "ANSFLOW_PIPELINE": "other"}
    env["ANSFLOW_STEP"] = "build"
    left = subprocess.Popen(["/bin/sh", "-c", "sleep 30"], env=env, start_new_session=True)
    try:
        assert _find_stale_group(_step_marks(987654, "deploy", "build")) is None
        assert _find_stale_group(_step_marks(987654, "other", "test")) is None
        assert _find_stale_group(_step_marks(987654, "other", "build")) == left.pid
    finally:
        left.kill()
        left.wait(5)
