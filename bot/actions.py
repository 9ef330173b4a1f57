"""Buttons: one handler per ``action_id``, with the same error rules as commands.

``ACTIONS`` maps an ``action_id`` to its handler. The Cancel button and
the approval buttons (``views.APPROVE_ACTION_ID`` / ``views.REJECT_ACTION_ID``)
live here; their decisions are the engine's (``engine.approvals.decide``), the
same code the REST API calls.
A handler gets our own :class:`Click` (never a Bolt payload) and returns the
private reply for the clicker, or None.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot import messages as say
from bot.approval_views import parse_button_value
from bot.commands.base import CommandEnv, CommandError, run_id_of
from bot.commands.cancel import cancel_run
from bot.views import APPROVE_ACTION_ID, CANCEL_ACTION_ID, REJECT_ACTION_ID, Message, plain
from engine.approvals import APPROVE, REJECT, decide
from engine.permissions import Actor


@dataclass(frozen=True)
class Click:
    user_id: str
    channel_id: str
    action_id: str
    value: str
    block_id: str
    message_ts: str | None
    response_url: str | None
    trigger_id: str | None = None
    # "message" (a button in a channel) or "view" (the App Home, a modal: no channel).
    container_type: str = "message"

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.channel_id)


ActionHandler = Callable[[CommandEnv, Click], Awaitable[Message | None]]


def click_of(body: dict[str, Any]) -> Click:
    """The first action of a ``block_actions`` payload."""
    action = (body.get("actions") or [{}])[0]
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    message = body.get("message") or {}
    return Click(
        user_id=str((body.get("user") or {}).get("id") or ""),
        channel_id=str(channel),
        action_id=str(action.get("action_id") or ""),
        value=str(action.get("value") or ""),
        block_id=str(action.get("block_id") or ""),
        message_ts=message.get("ts") or container.get("message_ts"),
        response_url=body.get("response_url"),
        trigger_id=body.get("trigger_id"),
        container_type=str(container.get("type") or "message"),
    )


async def cancel_clicked(env: CommandEnv, click: Click) -> Message | None:
    return await cancel_run(env.engine, run_id_of(click.value), click.actor)


async def _decide(env: CommandEnv, click: Click, decision: str) -> Message:
    ids = parse_button_value(click.value)
    if ids is None:
        raise CommandError(say.approval_bad_button())
    run_id, approval_id = ids
    result = await decide(env.engine, run_id, click.actor, decision, approval_id=approval_id)
    return plain(say.approval_recorded(decision, max(0, result.required - result.approvals)))


async def approve_clicked(env: CommandEnv, click: Click) -> Message | None:
    return await _decide(env, click, APPROVE)


async def reject_clicked(env: CommandEnv, click: Click) -> Message | None:
    return await _decide(env, click, REJECT)


ACTIONS: dict[str, ActionHandler] = {
    CANCEL_ACTION_ID: cancel_clicked,
    APPROVE_ACTION_ID: approve_clicked,
    REJECT_ACTION_ID: reject_clicked,
}
