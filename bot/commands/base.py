"""What every subcommand gets and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot import messages as say
from bot.form_views import FormContext
from bot.parsing import ParsedCommand
from bot.views import Message
from engine.permissions import Actor
from engine.pipelines import Pipeline
from engine.runner import Engine
from storage.models import StepRun


class CommandError(Exception):
    """The command is used wrongly; ``str()`` is fit to show the asker."""


@dataclass(frozen=True)
class Invocation:
    """One ``/ansflow`` request, as our code sees it (never a Bolt payload)."""

    user_id: str
    channel_id: str
    text: str
    response_url: str | None = None
    trigger_id: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.channel_id)


class Modals(Protocol):
    """Opens the parameter form and the pipeline picker (``views.open``)."""

    async def open_form(
        self, trigger_id: str, pipeline: Pipeline, context: FormContext, given: dict[str, str]
    ) -> Message | None: ...

    async def open_picker(self, trigger_id: str, context: FormContext) -> Message | None: ...


@dataclass(frozen=True)
class CommandEnv:
    engine: Engine
    # Reads a Jenkins step's whole console from Jenkins (None when Jenkins is off).
    jenkins_console: Callable[[StepRun], Awaitable[str | None]] | None = None
    # Slack modals (None: no forms, e.g. in table tests).
    modals: Modals | None = None


Handler = Callable[[CommandEnv, Invocation, ParsedCommand], Awaitable[Message | None]]


def expect(command: ParsedCommand, *, min_args: int, max_args: int, params: bool = False) -> None:
    """Refuse missing or extra words with the command's usage."""
    if len(command.args) < min_args:
        raise CommandError(say.usage(command.name))
    if len(command.args) > max_args:
        raise CommandError(say.unexpected_args(command.name, command.args[max_args:]))
    if command.params and not params:
        raise CommandError(say.unexpected_params(command.name, sorted(command.params)))


def run_id_of(text: str) -> int:
    digits = text.removeprefix("#")
    if not digits.isdigit() or len(digits) > 12:
        raise CommandError(say.bad_run_id(text))
    return int(digits)
