"""What ``ansflow run`` shows on a terminal: a live table of steps (rich), output above it."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ansflow.cli_lines import prefix
from ansflow.cli_view import MARKS, failed_tail, result_line, seconds
from engine.events import RunSnapshot, StepSnapshot
from engine.state import RunStatus


def render(run: RunSnapshot) -> Table:
    table = Table(title=f"{run.pipeline} · run {run.id} · {run.status}", title_justify="left")
    table.add_column("", width=2)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    for step in run.steps:
        mark, style = MARKS[step.status]
        table.add_row(
            Text(mark, style=style),
            step.name,
            Text(step.status.value, style=style),
            seconds(step.started_at, step.finished_at),
        )
    return table


class LiveView:
    """Refreshed by the caller (no refresh thread): a closed terminal fails one call, quietly."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = Live(console=console, auto_refresh=False, transient=True)
        self._started = time.monotonic()
        self.gone = False
        self._guard(self._live.start)

    def _guard(self, action: Callable[[], object]) -> None:
        if self.gone:
            return
        try:
            action()
        except (OSError, ValueError):  # EIO (terminal closed), EPIPE, closed file
            self.gone = True

    def started(self, run: RunSnapshot) -> None:
        self.tick(run)

    def step(self, run: RunSnapshot, step: StepSnapshot, finished: bool) -> None:
        self.tick(run)

    def output(self, lines: list[tuple[str, str]]) -> None:
        if not lines:
            return
        texts = []
        for step, line in lines:
            text = Text(prefix(step), style="cyan")
            text.append_text(Text.from_ansi(line))
            texts.append(text)
        # One print for the batch: the live table below is redrawn once, not per line.
        batch = Text("\n").join(texts)
        self._guard(functools.partial(self._console.print, batch, soft_wrap=True))

    def tick(self, run: RunSnapshot | None) -> None:
        if run is None:
            return
        elapsed = Text(f"elapsed {time.monotonic() - self._started:.1f}s", style="dim")
        self._guard(lambda: self._live.update(Group(render(run), elapsed), refresh=True))

    def message(self, text: str) -> None:
        self._guard(lambda: self._console.print(text, markup=False, highlight=False))

    def finish(self, run: RunSnapshot, shown: set[str]) -> None:
        self.close()
        style = "green" if run.status == RunStatus.SUCCESS else "red"
        self._guard(lambda: self._console.print(render(run)))
        self._guard(
            lambda: self._console.print(
                Text(result_line(run), style=style), markup=False, highlight=False
            )
        )
        tail = failed_tail(run, shown)
        if tail is not None:
            name, lines = tail
            self._guard(lambda: self._console.print(f"--- last lines of {name} ---", style="dim"))
            self._guard(lambda: self._console.print(lines, markup=False, highlight=False))

    def close(self) -> None:
        if self._live.is_started:
            self._guard(self._live.stop)
