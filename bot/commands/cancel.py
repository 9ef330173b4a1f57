"""``/ansflow cancel ID``; the Cancel button shares :func:`cancel_run`."""

from __future__ import annotations

from bot import messages as say
from bot.commands.base import CommandEnv, Invocation, expect, run_id_of
from bot.parsing import ParsedCommand
from bot.views import Message, plain
from engine.permissions import Actor
from engine.runner import CancelResult, Engine


async def cancel_run(engine: Engine, run_id: int, actor: Actor) -> Message:
    """Permissions and idempotency are the engine's; raises its ``UserError``s."""
    result = await engine.cancel_run(run_id, actor)
    if result == CancelResult.ALREADY:
        return plain(say.cancel_already(run_id))
    return plain(say.cancel_requested(run_id))


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    expect(command, min_args=1, max_args=1)
    return await cancel_run(env.engine, run_id_of(command.args[0]), call.actor)
