"""``/ansflow run PIPELINE [key=value …]``."""

from __future__ import annotations

from bot.commands.base import CommandEnv, Invocation, expect
from bot.parsing import ParsedCommand
from bot.views import Message
from engine.runner import RunRequest


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    """Start the run; its card appears in the channel, so the asker needs no reply."""
    expect(command, min_args=1, max_args=1, params=True)
    await env.engine.start_run(
        RunRequest(
            pipeline=command.args[0],
            parameters=dict(command.params),
            actor=call.actor,
            trigger_type="manual",
            source="slack",
            channel_id=call.channel_id,
        )
    )
    return None
