"""Bolt listeners: ack first, then act once, then answer privately.

Every listener acknowledges at once (Bolt sends the HTTP answer the moment
``ack()`` runs; a form submission's answer is computed without the database
first, ``bot.forms``). The work goes on in a background task which first
records the request (``bot.once``): a duplicate does nothing, and while the
database is unreachable the asker is told so privately instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import messages as say
from bot.actions import ActionHandler, Click, click_of
from bot.commands import CommandEnv, Invocation, dispatch, guarded
from bot.form_views import FORM_CALLBACK, PICKER_CALLBACK, notice
from bot.forms import Answer, Forms
from bot.home import HomePublisher
from bot.once import RequestLedger, Seen, request_key
from bot.replies import Replies
from bot.views import plain

log = logging.getLogger(__name__)

Spawn = Callable[[Awaitable[None]], None]
Work = Callable[[], Awaitable[None]]


class Listeners:
    def __init__(
        self,
        env: CommandEnv,
        forms: Forms,
        home: HomePublisher,
        replies: Replies,
        spawn: Spawn,
    ) -> None:
        self.env = env
        self.forms = forms
        self.home = home
        self.replies = replies
        self.spawn = spawn
        self.ledger = RequestLedger()

    def register(self, bolt: AsyncApp, buttons: dict[str, ActionHandler]) -> None:
        bolt.command("/ansflow")(self._on_command)
        for action_id, handler in buttons.items():
            bolt.action(action_id)(self._action_listener(handler))
        bolt.view(FORM_CALLBACK)(self._view_listener(self.forms.form_submitted))
        bolt.view(PICKER_CALLBACK)(self._view_listener(self.forms.picker_submitted))
        bolt.event("app_home_opened")(self._on_home)

    async def _once(
        self, body: dict[str, Any], work: Work, user: str, channel: str, response_url: str | None
    ) -> None:
        seen = await self.ledger.first_time(request_key(body))
        if seen == Seen.DUPLICATE:
            log.info("Slack request from %s seen before; not acting again", user or "Slack")
        elif seen == Seen.NO_DATABASE:
            if user:
                await self.replies.tell(user, channel, response_url, plain(say.database_down()))
        else:
            await work()

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        call = Invocation(
            user_id=str(body.get("user_id") or ""),
            channel_id=str(body.get("channel_id") or ""),
            text=str(body.get("text") or ""),
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
        )

        async def work() -> None:
            reply = await dispatch(self.env, call)
            if reply is not None:
                await self.replies.tell(call.user_id, call.channel_id, call.response_url, reply)

        self.spawn(self._once(body, work, call.user_id, call.channel_id, call.response_url))

    def _action_listener(self, handler: ActionHandler) -> Any:
        async def on_action(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            click = click_of(body)

            async def work() -> None:
                await self._answer_click(click, handler)

            self.spawn(self._once(body, work, click.user_id, click.channel_id, click.response_url))

        return on_action

    async def _answer_click(self, click: Click, handler: ActionHandler) -> None:
        what = f"button {click.action_id}={click.value!r} by {click.user_id}"
        reply = await guarded(handler(self.env, click), what=what)
        if reply is not None:
            await self.replies.tell(click.user_id, click.channel_id, click.response_url, reply)

    def _view_listener(self, handler: Callable[[dict[str, Any]], Answer]) -> Any:
        async def on_view(ack: Any, body: dict[str, Any]) -> None:
            try:
                answer = handler(body)
            except Exception:
                log.exception("form submission failed")
                answer = Answer({"response_action": "update", "view": notice(say.apology("form"))})
            await ack(**answer.ack)
            then = answer.then
            if then is None:
                return
            user = str((body.get("user") or {}).get("id") or "")
            channel = answer.channel or ""

            async def work() -> None:
                await then

            async def once() -> None:
                try:
                    await self._once(body, work, user, channel, None)
                finally:
                    then.close()  # never awaited when the submission is a duplicate

            self.spawn(once())

        return on_view

    async def _on_home(self, ack: Any, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        user = str(event.get("user") or "")
        if not user or event.get("tab", "home") != "home":
            return

        async def work() -> None:
            await self.home.opened(user)

        self.spawn(self._once(body, work, "", "", None))
