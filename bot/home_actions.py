"""Buttons of the App Home that are not the approval buttons: Run (opens the form)."""

from __future__ import annotations

from bot.actions import Click
from bot.commands.base import CommandEnv
from bot.form_views import FormContext
from bot.home import home_actor
from bot.views import Message
from engine.errors import NotAllowed
from engine.permissions import run_refusal


async def home_run_clicked(env: CommandEnv, click: Click) -> Message | None:
    """The form of the pipeline on the button; the run posts in its channel or the DM."""
    pipeline = env.engine.source.get(click.value)  # removed meanwhile: PipelineNotFound
    refusal = run_refusal(pipeline, home_actor(click.user_id, pipeline.channel), env.engine.admins)
    if refusal:
        raise NotAllowed(refusal)
    if env.modals is None or not click.trigger_id:
        return None
    context = FormContext(pipeline.name, click.user_id, pipeline.channel)
    return await env.modals.open_form(click.trigger_id, pipeline, context, {})
