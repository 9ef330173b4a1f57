"""``ansflow run``: one pipeline in the terminal, with live progress (rich).

Exit code 0 when the run succeeds, 1 otherwise (2 for bad input). Ctrl-C
cancels the run cleanly: process groups are killed and the run ends
``cancelled``, recorded in the same database as runs from Slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import time
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ansflow.settings import Settings
from ansflow.wiring import build_core
from bot.parsing import CommandSyntaxError, split_key_values
from engine.errors import UserError
from engine.events import Event, RunFinished, RunSnapshot, RunStarted, StepFinished, StepStarted
from engine.permissions import Actor
from engine.runner import Engine, RunRequest
from engine.state import RunStatus, StepStatus
from storage.db import DatabaseError, close_db, open_db

# Bad input fails like a failed run: the pipeline did not succeed.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 1

STYLE = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("▶", "cyan"),
    StepStatus.WAITING_APPROVAL: ("⏸", "yellow"),
    StepStatus.SUCCESS: ("✔", "green"),
    StepStatus.FAILED: ("✘", "red"),
    StepStatus.CANCELLED: ("■", "magenta"),
    StepStatus.SKIPPED: ("-", "dim"),
}


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    stop = end or datetime.now(start.tzinfo)
    return f"{(stop - start).total_seconds():.1f}s"


def render(run: RunSnapshot) -> Table:
    table = Table(title=f"{run.pipeline} · run {run.id} · {run.status}", title_justify="left")
    table.add_column("", width=2)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    for step in run.steps:
        mark, style = STYLE[step.status]
        table.add_row(
            Text(mark, style=style),
            step.name,
            Text(step.status.value, style=style),
            _seconds(step.started_at, step.finished_at),
        )
    return table


def _summary(console: Console, run: RunSnapshot) -> None:
    duration = f" in {run.duration:.1f}s" if run.duration is not None else ""
    if run.status == RunStatus.SUCCESS:
        console.print(f"[green]✔ {run.pipeline} run {run.id} succeeded{duration}[/green]")
        return
    console.print(f"[red]✘ {run.pipeline} run {run.id} {run.status}{duration}[/red]", end="")
    console.print(f": {run.reason}" if run.reason else "", markup=False, highlight=False)
    failed = next((s for s in run.steps if s.status == StepStatus.FAILED), None)
    if failed is not None and failed.log_tail:
        console.print(f"--- last lines of {failed.name} ---", style="dim")
        console.print(failed.log_tail, markup=False, highlight=False)


QUOTES = ("\"", "'")


def parse_cli_params(tokens: list[str]) -> dict[str, str]:
    """``key=value`` words as the shell left them; a value still in quotes loses them.

    So ``ansflow run p 'msg="two words"'`` and ``ansflow run p msg="two words"``
    mean the same; a value that opens a quote and does not close it is an error.
    """
    params = split_key_values(tokens)
    for key, value in params.items():
        if value[:1] in QUOTES:
            quote = value[0]
            if len(value) < 2 or not value.endswith(quote):
                raise CommandSyntaxError(f"Unbalanced {quote} in the value of `{key}`.")
            params[key] = value[1:-1]
    return params


def run_in_terminal(settings: Settings, pipeline: str, raw_params: list[str]) -> int:
    console = Console(stderr=False, highlight=False)
    try:
        params = parse_cli_params(raw_params)
    except CommandSyntaxError as exc:
        console.print(f"ansflow: {exc}", markup=False)
        return EXIT_USAGE
    return asyncio.run(_run(settings, pipeline, params, console))


async def _run(settings: Settings, pipeline: str, params: dict[str, str], console: Console) -> int:
    try:
        await open_db(settings.database_url)
    except DatabaseError as exc:
        console.print(f"ansflow: {exc}", markup=False)
        return EXIT_FAILED
    core = build_core(settings)
    try:
        return await _run_with_core(core.engine, pipeline, params, console)
    finally:
        await core.stop()
        await close_db()


async def _run_with_core(
    engine: Engine, pipeline: str, params: dict[str, str], console: Console
) -> int:
    latest: dict[str, RunSnapshot] = {}
    plain = not console.is_terminal

    def on_event(event: Event) -> None:
        latest["run"] = event.run
        if plain and isinstance(event, RunStarted):
            console.print(f"{event.run.pipeline} run {event.run.id} started", markup=False)
        if plain and isinstance(event, StepStarted | StepFinished) and event.step is not None:
            step = event.step
            mark, _ = STYLE[step.status]
            took = (
                _seconds(step.started_at, step.finished_at)
                if isinstance(event, StepFinished)
                else ""
            )
            console.print(f"{mark} {step.name}: {step.status.value} {took}".rstrip(), markup=False)
        if isinstance(event, RunFinished):
            latest["done"] = event.run

    engine.bus.subscribe(on_event)
    user = f"cli:{_user()}"
    # Ctrl-C handling is in place before the first step can start.
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    try:
        try:
            snapshot = await engine.start_run(
                RunRequest(pipeline, params, Actor(user, trusted=True), source="cli")
            )
        except UserError as exc:
            console.print(f"ansflow: {exc}", markup=False)
            return EXIT_USAGE
        final = await _follow(engine, snapshot.id, latest, interrupted, console, plain, user)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, ValueError):
                loop.remove_signal_handler(sig)
    await engine.run_until_idle()
    if not plain:
        console.print(render(final))
    _summary(console, final)
    return EXIT_OK if final.status == RunStatus.SUCCESS else EXIT_FAILED


async def _follow(
    engine: Engine,
    run_id: int,
    latest: dict[str, RunSnapshot],
    interrupted: asyncio.Event,
    console: Console,
    plain: bool,
    user: str,
) -> RunSnapshot:
    finished = asyncio.ensure_future(engine.wait_finished(run_id))
    cancel_sent = False
    live = None if plain else Live(console=console, refresh_per_second=8, transient=True)
    started = time.monotonic()
    with live if live is not None else contextlib.nullcontext():
        while not finished.done():
            waiter = asyncio.ensure_future(interrupted.wait())
            await asyncio.wait(
                {finished, waiter}, timeout=0.125, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if interrupted.is_set() and not cancel_sent:
                cancel_sent = True
                console.print("cancelling…", markup=False)
                await engine.cancel_run(run_id, Actor(user, trusted=True))
            if live is not None and "run" in latest:
                elapsed = Text(f"elapsed {time.monotonic() - started:.1f}s", style="dim")
                live.update(Group(render(latest["run"]), elapsed))
    result: RunSnapshot = finished.result()
    return result


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
