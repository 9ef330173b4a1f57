"""``ansflow run``'s follower in process, on the real engine and event bus.

The shell executor publishes a running step's lines (``StepLog``, batched a
few times a second): the follower must show each line, under its step's name,
while the step is still running, and a last line without its newline too.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from ansflow.cli_run import Follower, Signals
from ansflow.cli_view import PlainView
from ansflow.wiring import build_core
from engine.state import StepStatus
from tests.helpers import eventually, make_settings, write_pipeline


async def test_output_is_shown_while_the_step_runs(db: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    write_pipeline(
        tmp_path / "pipelines",
        "live",
        "name: live\nsteps:\n"
        f"  - name: Build\n    run: echo compiling; i=0; while [ ! -e {release} ] "
        "&& [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; echo link\n"
        "  - name: Test\n    run: echo tests pass; printf 'no newline'\n",
    )
    core = build_core(make_settings(db, tmp_path / "pipelines"))
    screen = io.StringIO()
    follower = Follower(core.engine, PlainView(screen), Signals())
    task = asyncio.ensure_future(follower.run("live", {}))
    try:
        await eventually(lambda: asyncio.sleep(0, screen.getvalue()), lambda s: "▶ Build" in s)
        run = await core.engine.snapshot(1)
        build = next(s for s in run.steps if s.name == "Build")
        assert build.status == StepStatus.RUNNING
        await eventually(
            lambda: asyncio.sleep(0, screen.getvalue()), lambda s: "[Build] compiling\n" in s
        )
        assert "link" not in screen.getvalue()
        assert "✔ Build" not in screen.getvalue()
        assert (await core.engine.snapshot(1)).steps[0].status == StepStatus.RUNNING
        release.touch()
        code = await asyncio.wait_for(task, 30)
    finally:
        release.touch()
        if not task.done():
            task.cancel()
        await core.stop()
    assert code == 0
    lines = screen.getvalue().splitlines()
    assert lines == [
        "live run 1 started",
        "▶ Build: running",
        "[Build] compiling",
        "[Build] link",
        lines[4],
        "▶ Test: running",
        "[Test] tests pass",
        "[Test] no newline",
        lines[8],
        lines[9],
    ]
    assert lines[4].startswith("✔ Build: success ")
    assert lines[8].startswith("✔ Test: success ")
    assert lines[9].startswith("✔ live run 1 succeeded in ")
    # Shown live once: the stored log is not printed again at the step's end.
    assert screen.getvalue().count("compiling") == 1


async def test_a_failed_step_shows_its_output_once_and_no_tail_again(
    db: str, tmp_path: Path
) -> None:
    write_pipeline(
        tmp_path / "pipelines",
        "boom",
        "name: boom\nsteps:\n  - name: Deploy\n    run: echo first; echo it went boom; exit 4\n",
    )
    core = build_core(make_settings(db, tmp_path / "pipelines"))
    screen = io.StringIO()
    try:
        code = await Follower(core.engine, PlainView(screen), Signals()).run("boom", {})
    finally:
        await core.stop()
    assert code == 1
    text = screen.getvalue()
    assert text.count("[Deploy] it went boom\n") == 1
    assert "last lines of" not in text
    assert "✘ boom run 1 failed" in text
    assert "exited with 4" in text
