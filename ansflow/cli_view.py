"""What ``ansflow run`` prints when its output is not a terminal: plain lines.

Also the parts both views share (marks, summary). No ``rich`` here: a script
or CI log reading the output does not pay for importing it. Every write is
guarded: once the output is gone (terminal closed, pipe reader gone), the run
is still followed and cancelled properly, silently.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import IO, Protocol

from ansflow.cli_lines import render_plain
from engine.events import RunSnapshot, StepSnapshot
from engine.state import RunStatus, StepStatus

MARKS = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("▶", "cyan"),
    StepStatus.WAITING_APPROVAL: ("⏸", "yellow"),
    StepStatus.SUCCESS: ("✔", "green"),
    StepStatus.FAILED: ("✘", "red"),
    StepStatus.CANCELLED: ("■", "magenta"),
    StepStatus.SKIPPED: ("-", "dim"),
}


def seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    stop = end or datetime.now(start.tzinfo)
    return f"{(stop - start).total_seconds():.1f}s"


def step_line(step: StepSnapshot, finished: bool) -> str:
    mark, _ = MARKS[step.status]
    took = seconds(step.started_at, step.finished_at) if finished else ""
    return f"{mark} {step.name}: {step.status.value} {took}".rstrip()


def result_line(run: RunSnapshot) -> str:
    duration = f" in {run.duration:.1f}s" if run.duration is not None else ""
    if run.status == RunStatus.SUCCESS:
        return f"✔ {run.pipeline} run {run.id} succeeded{duration}"
    reason = f": {run.reason}" if run.reason else ""
    return f"✘ {run.pipeline} run {run.id} {run.status}{duration}{reason}"


def failed_tail(run: RunSnapshot, shown: set[str]) -> tuple[str, str] | None:
    """The failing step's last lines, unless its output was already shown."""
    failed = next((s for s in run.steps if s.status == StepStatus.FAILED), None)
    if failed is None or not failed.log_tail or failed.name in shown:
        return None
    return failed.name, failed.log_tail


class View(Protocol):
    def started(self, run: RunSnapshot) -> None: ...
    def step(self, run: RunSnapshot, step: StepSnapshot, finished: bool) -> None: ...
    def output(self, lines: list[tuple[str, str]]) -> None: ...
    def tick(self, run: RunSnapshot | None) -> None: ...
    def message(self, text: str) -> None: ...
    def finish(self, run: RunSnapshot, shown: set[str]) -> None: ...
    def close(self) -> None: ...


class PlainView:
    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout
        self.gone = False

    def _write(self, text: str) -> None:
        if self.gone or not text:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # EIO (terminal closed), EPIPE, closed file
            self.gone = True

    def started(self, run: RunSnapshot) -> None:
        self._write(f"{run.pipeline} run {run.id} started\n")

    def step(self, run: RunSnapshot, step: StepSnapshot, finished: bool) -> None:
        self._write(step_line(step, finished) + "\n")

    def output(self, lines: list[tuple[str, str]]) -> None:
        self._write(render_plain(lines))

    def tick(self, run: RunSnapshot | None) -> None:
        return None

    def message(self, text: str) -> None:
        self._write(text + "\n")

    def finish(self, run: RunSnapshot, shown: set[str]) -> None:
        text = result_line(run) + "\n"
        tail = failed_tail(run, shown)
        if tail is not None:
            text += f"--- last lines of {tail[0]} ---\n{tail[1]}\n"
        self._write(text)

    def close(self) -> None:
        return None
