"""``/ansflow status [ID]``: one run in detail, or the caller's recent runs."""

from __future__ import annotations

from bot.commands.base import CommandEnv, Invocation, expect, run_id_of
from bot.parsing import ParsedCommand
from bot.queries import recent_runs_of, rerun_of
from bot.views import Message, recent_runs, run_detail
from storage.runs import now

RECENT = 10


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    expect(command, min_args=0, max_args=1)
    if command.args:
        run = await env.engine.snapshot(run_id_of(command.args[0]))
        return run_detail(run, now(), await rerun_of(run.id))
    return recent_runs(await recent_runs_of(call.user_id, RECENT), now())
