"""``/ansflow list``: the pipelines the caller may run here, with parameters and defaults."""

from __future__ import annotations

from bot.commands.base import CommandEnv, Invocation, expect
from bot.parsing import ParsedCommand
from bot.views import Message, pipeline_list
from engine.permissions import may_run


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    expect(command, min_args=0, max_args=0)
    catalog = env.engine.source.catalog()
    allowed = [
        pipeline
        for _, pipeline in sorted(catalog.pipelines.items())
        if may_run(pipeline, call.actor, env.engine.admins)
    ]
    return pipeline_list(allowed)
