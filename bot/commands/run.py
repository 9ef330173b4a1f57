"""``/ansflow run PIPELINE [key=value …]``; with required values missing, the form.

``/ansflow run`` alone opens a picker of the pipelines the person may run
here. An unknown pipeline is answered with what is valid: the close matches,
else the pipelines the person may run here.
"""

from __future__ import annotations

from bot import messages as say
from bot.commands.base import CommandEnv, CommandError, Invocation, expect
from bot.form_views import FormContext
from bot.parsing import ParsedCommand
from bot.views import Message
from engine.errors import NotAllowed, PipelineNotFound
from engine.params import resolve_parameters
from engine.permissions import may_run, run_refusal
from engine.pipelines import Pipeline
from engine.runner import RunRequest


def runnable_here(env: CommandEnv, call: Invocation) -> list[str]:
    catalog = env.engine.source.catalog()
    return [
        name
        for name, pipeline in sorted(catalog.pipelines.items())
        if may_run(pipeline, call.actor, env.engine.admins)
    ]


def find_pipeline(env: CommandEnv, call: Invocation, name: str) -> Pipeline:
    try:
        return env.engine.source.get(name)
    except PipelineNotFound as err:
        runnable = [] if err.close_matches else runnable_here(env, call)
        raise CommandError(say.no_such_pipeline(name, err.close_matches, runnable)) from None


def missing_values(pipeline: Pipeline, given: dict[str, str]) -> list[str]:
    return [
        name
        for name, spec in pipeline.parameters.items()
        if spec.required and spec.default is None and name not in given
    ]


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    """Start the run; its card appears in the channel, so the asker needs no reply."""
    if not command.args and not command.params and env.modals and call.trigger_id:
        context = FormContext("", call.user_id, call.channel_id)
        return await env.modals.open_picker(call.trigger_id, context)
    expect(command, min_args=1, max_args=1, params=True)
    pipeline = find_pipeline(env, call, command.args[0])
    given = dict(command.params)
    if missing_values(pipeline, given) and env.modals is not None and call.trigger_id:
        refusal = run_refusal(pipeline, call.actor, env.engine.admins)
        if refusal:
            raise NotAllowed(refusal)
        if set(given) - set(pipeline.parameters):
            resolve_parameters(pipeline, given)  # raises, naming the unknown ones
        context = FormContext(pipeline.name, call.user_id, call.channel_id)
        return await env.modals.open_form(call.trigger_id, pipeline, context, given)
    await env.engine.start_run(
        RunRequest(
            pipeline=pipeline.name,
            parameters=given,
            actor=call.actor,
            trigger_type="manual",
            source="slack",
            channel_id=call.channel_id,
        )
    )
    return None
