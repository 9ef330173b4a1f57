"""``ansflow run``: one pipeline in the terminal, its steps' output as it comes.

Each line a step prints is shown prefixed by the step's name (``[Build] …``);
on a terminal a live table of the steps stays below the output (rich), and
elsewhere (a pipe, CI) each step's start and end is a plain line. The run is
recorded in the same database as runs from Slack.

Exit code 0 when the run succeeds, 130 when Ctrl-C cancelled it, 1 otherwise
(bad input included). Ctrl-C, SIGTERM and SIGHUP (the terminal closed) all
cancel the run: its steps' process groups are ended and the run is stored
``cancelled`` before the command exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator

from ansflow.cli_lines import StepLines
from ansflow.cli_view import PlainView, View
from ansflow.settings import Settings
from ansflow.wiring import build_core
from engine.errors import UserError
from engine.events import (
    Event,
    RunSnapshot,
    RunStarted,
    StepFinished,
    StepLog,
    StepSnapshot,
    StepStarted,
)
from engine.permissions import Actor
from engine.runner import Engine, RunRequest
from engine.state import RunStatus
from storage.db import DatabaseError, close_db, open_db
from storage.models import StepRun

# Bad input fails like a failed run: the pipeline did not succeed.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 1, 130
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# After asking the engine to cancel (it ends process groups: TERM, then KILL
# a few seconds later), how long to wait for the run to end before giving up.
CANCEL_WAIT = 30.0
TICK = 0.125  # live table refresh

QUOTES = ('"', "'")


def parse_cli_params(tokens: list[str]) -> dict[str, str]:
    """``key=value`` words as the shell left them; a value still in quotes loses them.

    So ``ansflow run p 'msg="two words"'`` and ``ansflow run p msg="two words"``
    mean the same; a value that opens a quote and does not close it is an error
    (:class:`bot.parsing.CommandSyntaxError`, imported only when there are words).
    """
    if not tokens:
        return {}
    from bot.parsing import CommandSyntaxError, split_key_values

    params = split_key_values(tokens)
    for key, value in params.items():
        if value[:1] in QUOTES:
            quote = value[0]
            if len(value) < 2 or not value.endswith(quote):
                raise CommandSyntaxError(f"Unbalanced {quote} in the value of `{key}`.")
            params[key] = value[1:-1]
    return params


def exit_code(final: RunSnapshot, first_signal: int | None) -> int:
    if final.status == RunStatus.SUCCESS:
        return EXIT_OK
    if final.status == RunStatus.CANCELLED and first_signal == signal.SIGINT:
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def run_in_terminal(settings: Settings, pipeline: str, raw_params: list[str]) -> int:
    params: dict[str, str] = {}
    if raw_params:
        from bot.parsing import CommandSyntaxError

        try:
            params = parse_cli_params(raw_params)
        except CommandSyntaxError as exc:
            print(f"ansflow: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return asyncio.run(_run(settings, pipeline, params, sys.stdout.isatty()))


def _view(interactive: bool) -> View:
    if not interactive:
        return PlainView()
    from rich.console import Console

    from ansflow.cli_live import LiveView

    return LiveView(Console(highlight=False))


class Signals:
    """Ctrl-C, SIGTERM and SIGHUP, noted (the first one counts for the exit code)."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.count = 0
        self.arrived = asyncio.Event()

    def note(self, sig: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = sig
        self.arrived.set()

    @contextlib.contextmanager
    def handled(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in CANCEL_SIGNALS:
            loop.add_signal_handler(sig, self.note, sig)
        try:
            yield
        finally:
            for sig in CANCEL_SIGNALS:
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def code(self) -> int:
        return EXIT_INTERRUPTED if self.first == signal.SIGINT else EXIT_FAILED


async def _run(settings: Settings, pipeline: str, params: dict[str, str], interactive: bool) -> int:
    signals = Signals()
    with signals.handled():
        opening = asyncio.ensure_future(open_db(settings.database_url))
        interrupted = asyncio.ensure_future(signals.arrived.wait())
        await asyncio.wait({opening, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not opening.done():  # a signal while connecting: nothing started yet
            opening.cancel()
            with contextlib.suppress(BaseException):
                await opening
            await close_db()
            print("ansflow: interrupted before the run started", file=sys.stderr)
            return signals.code()
        try:
            opening.result()
        except DatabaseError as exc:
            print(f"ansflow: {exc}", file=sys.stderr)
            return EXIT_FAILED
        core = build_core(settings)
        await core.start()  # a replica of its own: its lease keeps its run its own
        try:
            if signals.first is not None:
                print("ansflow: interrupted before the run started", file=sys.stderr)
                return signals.code()
            follower = Follower(core.engine, _view(interactive), signals)
            return await follower.run(pipeline, params)
        finally:
            await core.stop()
            await close_db()


class Follower:
    """Starts the run, shows its events as they come, cancels it on a signal."""

    def __init__(self, engine: Engine, view: View, signals: Signals) -> None:
        self.engine = engine
        self.view = view
        self.signals = signals
        self.actor = Actor(f"cli:{_user()}", trusted=True)
        self.lines = StepLines()
        self.shown: set[str] = set()
        self.latest: RunSnapshot | None = None
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._run_id: int | None = None

    def on_event(self, event: Event) -> None:
        """An after-commit subscriber: queue and return."""
        self._events.append(event)
        self._wake.set()

    async def run(self, pipeline: str, params: dict[str, str]) -> int:
        self.engine.bus.subscribe(self.on_event)
        try:
            try:
                snapshot = await self.engine.start_run(
                    RunRequest(pipeline, params, self.actor, source="cli")
                )
            except UserError as exc:
                print(f"ansflow: {exc}", file=sys.stderr)
                return EXIT_USAGE
            self._run_id = snapshot.id
            self.latest = snapshot
            final = await self._follow(snapshot.id)
            if final is None:
                return self.signals.code()
            self.view.finish(final, self.shown)
            return exit_code(final, self.signals.first)
        finally:
            self.view.close()
            self.engine.bus.unsubscribe(self.on_event)

    async def _follow(self, run_id: int) -> RunSnapshot | None:
        finished = asyncio.ensure_future(self.engine.wait_finished(run_id))
        cancel_sent: float | None = None
        try:
            while not finished.done():
                self._wake.clear()
                await self._drain()
                if self.signals.first is not None and cancel_sent is None:
                    cancel_sent = time.monotonic()
                    self.view.message("cancelling…")
                    await self.engine.cancel_run(run_id, self.actor)
                if cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_WAIT:
                    self.view.message(
                        f"the run did not end within {CANCEL_WAIT:g}s of cancelling; "
                        "ending its processes"
                    )
                    return None
                woken = asyncio.ensure_future(self._wake.wait())
                arrived = asyncio.ensure_future(self.signals.arrived.wait())
                await asyncio.wait(
                    {finished, woken, arrived}, timeout=TICK, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                arrived.cancel()
                if self.signals.first is not None:
                    self.signals.arrived.clear()
                self.view.tick(self.latest)
            await self.engine.run_until_idle()
            await self._drain()
            self.view.output(self.lines.flush_all())
            result: RunSnapshot = finished.result()
            return result
        finally:
            finished.cancel()

    async def _drain(self) -> None:
        while self._events:
            await self._show(self._events.popleft())

    async def _show(self, event: Event) -> None:
        if event.run.id != self._run_id:
            return
        self.latest = event.run
        if isinstance(event, RunStarted):
            self.view.started(event.run)
        elif isinstance(event, StepLog):
            self._output(event.step_name, "".join(f"{line}\n" for line in event.lines))
        elif isinstance(event, StepStarted) and event.step is not None:
            self.view.step(event.run, event.step, finished=False)
        elif isinstance(event, StepFinished) and event.step is not None:
            await self._step_finished(event.run, event.step)
        else:
            self.view.tick(event.run)

    def _output(self, step: str, text: str) -> None:
        lines = self.lines.feed(step, text)
        if lines:
            self.shown.add(step)
            self.view.output(lines)

    async def _step_finished(self, run: RunSnapshot, step: StepSnapshot) -> None:
        if step.name not in self.lines.seen and step.log_tail:
            # Nothing came while it ran (no live output for this step): its stored log.
            # (An empty tail is an empty log, or one of blank lines only: no query.)
            stored = await StepRun.filter(id=step.id).values_list("log", flat=True)
            self._output(step.name, str(stored[0]) if stored else "")
        rest = self.lines.flush(step.name)
        if rest:
            self.shown.add(step.name)
            self.view.output(rest)
        self.view.step(run, step, finished=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
