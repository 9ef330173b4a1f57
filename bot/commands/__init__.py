"""The ``/ansflow`` subcommands, one module each, and the dispatcher.

:func:`dispatch` turns one invocation into the private reply to show the
asker (or None). Errors a person caused (``UserError``, bad syntax, wrong
usage) become that reply and change nothing; anything else is logged with its
traceback and answered with an apology carrying a reference id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable

from bot import messages as say
from bot.commands import cancel, logs, run, status
from bot.commands import help as help_command
from bot.commands import list as list_command
from bot.commands.base import CommandEnv, CommandError, Handler, Invocation
from bot.once import database_down
from bot.parsing import CommandSyntaxError, parse_command
from bot.views import Message, plain
from engine.errors import UserError

log = logging.getLogger(__name__)

COMMANDS: dict[str, Handler] = {
    "run": run.handle,
    "status": status.handle,
    "cancel": cancel.handle,
    "logs": logs.handle,
    "list": list_command.handle,
    "help": help_command.handle,
}

__all__ = ["COMMANDS", "CommandEnv", "Invocation", "dispatch", "guarded"]


async def dispatch(env: CommandEnv, call: Invocation) -> Message | None:
    async def work() -> Message | None:
        command = parse_command(call.text)
        handler = COMMANDS.get(command.name)
        if handler is None:
            raise CommandError(say.unknown_command(command.name))
        return await handler(env, call, command)

    return await guarded(work(), what=f"/ansflow {call.text[:80]!r} by {call.user_id}")


async def guarded(work: Awaitable[Message | None], *, what: str) -> Message | None:
    """Await ``work``; turn user errors into a reply and bugs into an apology."""
    try:
        return await work
    except (UserError, CommandSyntaxError, CommandError) as err:
        return plain(str(err))
    except Exception as err:
        if database_down(err):
            log.warning("%s: the database is unreachable (%s)", what, err)
            return plain(say.database_down())
        reference = uuid.uuid4().hex[:8]
        log.exception("%s failed (reference %s)", what, reference)
        return plain(say.apology(reference))
