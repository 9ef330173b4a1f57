"""``/ansflow help`` (also what an empty ``/ansflow`` shows)."""

from __future__ import annotations

from bot import messages as say
from bot.commands.base import CommandEnv, Invocation
from bot.parsing import ParsedCommand
from bot.views import Message, plain


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    return plain(say.help_text())
