"""Starting a step's shell (engine/executors/spawn.py), on the loop or in a thread.

A lone step forks on the loop's thread; one that starts beside others forks in
a worker thread. Either way the step must get the same thing: its environment
and folder, a session of its own (so that cancelling kills what it started),
its output, and its exit seen even while a background child holds the pipe.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.executors.spawn import PrepareFailed, start_shell

WAYS = [pytest.param(True, id="on the loop"), pytest.param(False, id="in a thread")]


async def output_of(stdout: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stdout.read(), 10)).decode()


@pytest.mark.parametrize("on_loop", WAYS)
async def test_a_step_gets_its_environment_folder_session_and_output(
    tmp_path: Path, on_loop: bool
) -> None:
    command = 'echo "who=$WHO"; pwd; sleep 0.3; echo done >&2'
    process, stdout, exited = await start_shell(
        command, {"WHO": "you", "PATH": os.environ["PATH"]}, tmp_path, on_loop=on_loop
    )
    assert os.getsid(process.pid) == process.pid  # a session (and group) of its own
    text = await output_of(stdout)
    assert text.splitlines() == ["who=you", str(tmp_path), "done"]
    await asyncio.wait_for(exited.wait(), 10)
    assert await process.wait() == 0


@pytest.mark.parametrize("on_loop", WAYS)
async def test_the_exit_is_seen_while_a_background_child_holds_the_output(
    tmp_path: Path, on_loop: bool
) -> None:
    process, stdout, exited = await start_shell(
        "sleep 30 & echo started; exit 3", {"PATH": os.environ["PATH"]}, tmp_path, on_loop=on_loop
    )
    try:
        await asyncio.wait_for(exited.wait(), 10)
        assert process.returncode == 3
        assert not stdout.at_eof()  # the sleep still holds the pipe
    finally:
        os.killpg(process.pid, 9)


@pytest.mark.parametrize("on_loop", WAYS)
async def test_a_folder_that_cannot_be_made_starts_nothing(tmp_path: Path, on_loop: bool) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    workdir = blocker / "run-1"

    def prepare() -> None:
        workdir.mkdir(parents=True)

    with pytest.raises(PrepareFailed):
        await start_shell("touch made", {}, workdir, prepare, on_loop=on_loop)
    assert not (tmp_path / "made").exists()
