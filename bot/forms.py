"""Opening the parameter form and the picker, and answering their submissions.

A ``view_submission`` must be answered in its HTTP response within 3 s, so
everything checked there is checked without Slack calls: the signed
``private_metadata`` (:mod:`bot.form_views`), that the pipeline still exists,
that the person may run it where it will post (``engine.permissions``), and
the values (``engine.params.resolve_parameters``, the command's own rules).
An invalid value comes back on its input (``response_action: errors``); any
other refusal replaces the form with a notice. Nothing is created before
the answer; a valid submission closes the form and the run starts right after,
through ``Engine.start_run`` as the command would (which checks it all again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages as say
from bot.form_views import (
    PICKER_BLOCK,
    FormContext,
    block_of,
    input_block_ids,
    notice,
    parameter_form,
    picked,
    picker,
    read_context,
    submitted_values,
)
from bot.home import home_actor
from bot.views import Message, plain
from engine.errors import InvalidParameter, PipelineNotFound
from engine.params import resolve_parameters
from engine.permissions import Actor, may_run, run_refusal
from engine.pipelines import Pipeline
from engine.runner import Engine, RunRequest

log = logging.getLogger(__name__)

MAX_ERROR = 2000

Start = Callable[[str], Awaitable[Message | None]]
# Runs ``start(channel)`` for a person (channel None: their DM); answers them privately.
RunFor = Callable[[str, str | None, Start], Awaitable[None]]


@dataclass
class Answer:
    """What to ``ack()`` a submission with, and the work that follows it (if any)."""

    ack: dict[str, Any] = field(default_factory=dict)
    then: Coroutine[Any, Any, None] | None = None
    # Where the asker is answered privately about ``then`` (None: their DM).
    channel: str | None = None


def _errors(errors: dict[str, str]) -> Answer:
    shown = {k: v[:MAX_ERROR] for k, v in errors.items()}
    return Answer({"response_action": "errors", "errors": shown})


def _notice(text: str) -> Answer:
    return Answer({"response_action": "update", "view": notice(text)})


def form_actor(user: str, channel: str | None) -> Actor:
    """Who runs a submitted form, where: a form from the Home may post in a DM."""
    return Actor(user, channel) if channel else home_actor(user, None)


class Forms:
    def __init__(
        self,
        client: AsyncWebClient,
        engine: Engine,
        key: bytes,
        run: Callable[
            [str, str | None, Callable[[str], Awaitable[Message | None]]], Awaitable[None]
        ],
    ) -> None:
        self.client = client
        self.engine = engine
        self.key = key
        # Runs ``start(channel)`` for ``user`` (channel None: their DM) and tells them
        # privately whatever it answers.
        self._run = run

    # ---- opening -------------------------------------------------------------

    async def _open(self, trigger_id: str, view: dict[str, Any]) -> Message | None:
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as err:
            code = str(err.response.get("error") or "")
            log.warning("views.open refused: %s", code)
            return plain(say.form_not_opened(code))
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("views.open failed: %s", err)
            return plain(say.form_not_opened("unreachable"))
        return None

    async def open_form(
        self, trigger_id: str, pipeline: Pipeline, context: FormContext, given: dict[str, str]
    ) -> Message | None:
        view = parameter_form(pipeline, context, self.key, given)
        if view is None:
            return plain(say.form_too_big(pipeline.name, len(pipeline.parameters)))
        return await self._open(trigger_id, view)

    async def open_picker(self, trigger_id: str, context: FormContext) -> Message | None:
        actor = Actor(context.user, context.channel)
        catalog = self.engine.source.catalog()
        names = [
            name
            for name, pipeline in sorted(catalog.pipelines.items())
            if may_run(pipeline, actor, self.engine.admins)
        ]
        if not names:
            return plain(say.picker_none())
        return await self._open(trigger_id, picker(names, context, self.key))

    # ---- submissions -----------------------------------------------------------

    def _context(self, body: dict[str, Any]) -> FormContext | None:
        user = str((body.get("user") or {}).get("id") or "")
        view = body.get("view") or {}
        context = read_context(str(view.get("private_metadata") or ""), self.key)
        if context is None or context.user != user:
            return None
        return context

    def picker_submitted(self, body: dict[str, Any]) -> Answer:
        context = self._context(body)
        if context is None:
            return _notice(say.form_stale())
        name = picked((body.get("view") or {}).get("state") or {})
        if name is None:
            return _errors({PICKER_BLOCK: say.picker_none_chosen()})
        try:
            pipeline = self.engine.source.get(name)
        except PipelineNotFound:
            return _errors({PICKER_BLOCK: say.form_pipeline_gone(name)})
        refusal = run_refusal(
            pipeline, form_actor(context.user, context.channel), self.engine.admins
        )
        if refusal:
            return _errors({PICKER_BLOCK: refusal})
        form = FormContext(pipeline.name, context.user, context.channel)
        view = parameter_form(pipeline, form, self.key)
        if view is None:
            return _errors(
                {PICKER_BLOCK: say.form_too_big(pipeline.name, len(pipeline.parameters))}
            )
        return Answer({"response_action": "update", "view": view})

    def form_submitted(self, body: dict[str, Any]) -> Answer:
        context = self._context(body)
        if context is None:
            return _notice(say.form_stale())
        try:
            pipeline = self.engine.source.get(context.pipeline)
        except PipelineNotFound:
            return _notice(say.form_pipeline_gone(context.pipeline))
        refusal = run_refusal(
            pipeline, form_actor(context.user, context.channel), self.engine.admins
        )
        if refusal:
            return _notice(refusal)
        view = body.get("view") or {}
        values = submitted_values(view.get("state") or {})
        try:
            resolve_parameters(pipeline, values)
        except InvalidParameter as err:
            block = block_of(err.parameter) if err.parameter else ""
            if block in input_block_ids(view):
                return _errors({block: str(err)})
            return _notice(str(err))
        return Answer({}, self._start(pipeline.name, context, values), context.channel)

    async def _start(self, pipeline: str, context: FormContext, values: dict[str, str]) -> None:
        async def start(channel: str) -> Message | None:
            await self.engine.start_run(
                RunRequest(
                    pipeline=pipeline,
                    parameters=values,
                    actor=Actor(context.user, channel),
                    trigger_type="manual",
                    source="slack",
                    channel_id=channel,
                )
            )
            return None

        await self._run(context.user, context.channel, start)
