"""``/ansflow logs ID [STEP]``: the end of a step's log, and where the rest is.

A running local step's output so far is in its row (the engine writes it
there every second or so while the step runs), so any replica shows it.
"""

from __future__ import annotations

from bot import messages as say
from bot.commands.base import CommandEnv, CommandError, Invocation, expect, run_id_of
from bot.parsing import ParsedCommand
from bot.queries import log_attached
from bot.views import Message, log_view
from engine.errors import RunNotFound, StepNotFound
from engine.snapshots import step_snapshot
from engine.state import StepStatus
from storage.models import StepRun
from storage.runs import read_run, read_steps

SHOWN_CHARS = 2600


def choose_step(steps: list[StepRun], wanted: str | None, run_id: int) -> StepRun:
    """The named step (name, case-insensitive, or position from 1); else the failed or latest."""
    if wanted is not None:
        lowered = wanted.lower()
        for position, step in enumerate(steps, start=1):
            if step.name.lower() == lowered or str(position) == wanted or step.path == wanted:
                return step
        raise StepNotFound(run_id, wanted, [s.name for s in steps])
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    if failed:
        return failed[0]
    started = [s for s in steps if s.started_at is not None]
    if not started:
        raise CommandError(say.logs_no_step(run_id))
    return max(started, key=lambda s: (s.started_at, s.position))


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    expect(command, min_args=1, max_args=2)
    run_id = run_id_of(command.args[0])
    if await read_run(run_id) is None:
        raise RunNotFound(run_id)
    steps = await read_steps(run_id)
    step = choose_step(steps, command.args[1] if len(command.args) > 1 else None, run_id)
    console = None
    if step.kind == "jenkins" and env.jenkins_console is not None:
        console = await env.jenkins_console(step)  # the whole build console, from Jenkins
    text = console or step.log or step.log_tail
    whole = len(text) <= SHOWN_CHARS and not step.log_dropped
    shown = text if whole else text[-SHOWN_CHARS:]
    running = step.status == StepStatus.RUNNING
    attached = not whole and not running and await log_attached(step.id)
    return log_view(run_id, step_snapshot(step), shown, whole, attached, running=running)
