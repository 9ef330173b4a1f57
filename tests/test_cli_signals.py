"""``ansflow run`` as a child process: Ctrl-C, SIGTERM, SIGHUP and a closed terminal.

Each cancels the run: the command exits (130 after Ctrl-C, 1 otherwise), the
run is stored ``cancelled`` in the same database, and no process of the step's
process group is left running.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.helpers import write_pipeline

ANSFLOW = str(Path(sys.executable).parent / "ansflow")


def env_for(cwd: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}


def slow_pipeline(cwd: Path) -> Path:
    """A step that leaves a background child in its group, and a step that must never run."""
    pidfile = cwd / "child.pid"
    write_pipeline(
        cwd / "pipelines",
        "slow",
        "name: slow\nsteps:\n"
        f"  - name: wait\n    run: echo waiting; sleep 300 & echo $! > {pidfile}; wait\n"
        "  - name: after\n    run: echo never\n",
    )
    return pidfile


def wait_for_pid(pidfile: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the step never started"
        assert process.poll() is None, f"ansflow run exited early with {process.returncode}"
        time.sleep(0.05)
    return int(pidfile.read_text())


def stored(cwd: Path) -> tuple[list[tuple[str, str]], dict[str, tuple[str, str | None]]]:
    with sqlite3.connect(cwd / "ansflow.db") as conn:
        runs = list(conn.execute("SELECT pipeline, status FROM run ORDER BY id"))
        steps = {
            name: (status, external_id)
            for name, status, external_id in conn.execute(
                "SELECT name, status, external_id FROM step_run"
            )
        }
    return runs, steps


def live_members(pgid: int) -> list[int]:
    """Processes of the group ``pgid`` that are not zombies."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def assert_cancelled_and_gone(cwd: Path, child: int, pgid: int) -> None:
    runs, steps = stored(cwd)
    assert runs == [("slow", "cancelled")]
    assert steps["wait"][0] == "cancelled"
    assert steps["after"][0] in ("pending", "skipped", "cancelled")
    assert pgid > 0
    deadline = time.monotonic() + 10
    while live_members(pgid):
        assert time.monotonic() < deadline, f"left running in group {pgid}: {live_members(pgid)}"
        time.sleep(0.05)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 1), (signal.SIGHUP, 1)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_a_signal_cancels_the_run_and_ends_its_processes(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    pidfile = slow_pipeline(tmp_path)
    process = subprocess.Popen(
        [ANSFLOW, "run", "slow"],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        child = wait_for_pid(pidfile, process)
        pgid = os.getpgid(child)  # the step's own process group
        process.send_signal(sig)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    text = output.decode()
    assert process.returncode == code, text
    assert "[wait] waiting" in text
    assert "cancelling" in text
    assert "slow run 1 cancelled" in text
    assert "never" not in text
    assert "Traceback" not in text
    assert_cancelled_and_gone(tmp_path, child, pgid)


def test_closing_the_terminal_cancels_the_run(tmp_path: Path) -> None:
    """The live (rich) view on a real pseudo-terminal, which is then closed: SIGHUP."""
    pidfile = slow_pipeline(tmp_path)
    master, slave = pty.openpty()

    def take_terminal() -> None:  # the child is a session leader: make the pty its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [ANSFLOW, "run", "slow"],
        cwd=tmp_path,
        env={**env_for(tmp_path), "TERM": "xterm"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(slave)
    try:
        child = wait_for_pid(pidfile, process)
        pgid = os.getpgid(child)  # the step's own process group
        seen = b""
        deadline = time.monotonic() + 10
        while b"running" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 65536)
        assert b"slow \xc2\xb7 run 1 \xc2\xb7 running" in seen  # the live table is on screen
        os.close(master)  # the terminal goes away: the kernel hangs up the session
        master = -1
        process.wait(timeout=30)
    finally:
        if master >= 0:
            os.close(master)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert_cancelled_and_gone(tmp_path, child, pgid)


def test_a_second_ctrl_c_while_cancelling_changes_nothing(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    write_pipeline(
        tmp_path / "pipelines",
        "stubborn",
        "name: stubborn\nsteps:\n"
        "  - name: wait\n    run: trap 'echo ignoring TERM' TERM; "
        f"echo $$ > {ready}; while :; do sleep 0.1; done\n",
    )
    process = subprocess.Popen(
        [ANSFLOW, "run", "stubborn"],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_pid(ready, process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)  # a second, impatient Ctrl-C while the step ignores TERM
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, rest.decode()
    assert "stubborn run 1 cancelled" in rest.decode()
    assert "[wait] ignoring TERM" in rest.decode()
    runs, steps = stored(tmp_path)
    assert runs == [("stubborn", "cancelled")]
    pgid = int(steps["wait"][1] or 0)
    deadline = time.monotonic() + 10
    while live_members(pgid):
        assert time.monotonic() < deadline, f"left running: {live_members(pgid)}"
        time.sleep(0.05)
