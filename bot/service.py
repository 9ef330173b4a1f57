"""The Slack bot inside ``ansflow serve``: Web API client, Bolt app, listeners, notifier.

Every command and click is acknowledged first (Bolt sends the HTTP answer the
moment ``ack()`` runs) and handled in a background task afterwards; its
private reply goes to the asker only (``chat.postEphemeral``, else the
``response_url``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from ansflow.wiring import Core
from bot.actions import ACTIONS, ActionHandler, Click, click_of
from bot.commands import CommandEnv, Invocation, dispatch, guarded
from bot.endpoint import Handler, events_handler
from bot.errors import SlackStartupError
from bot.notifier import Notifier, Pacing
from bot.views import Message
from engine.events import Event
from storage.models import StepRun

log = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api/"
API_TIMEOUT = 10


def api_base(url: str | None) -> str:
    return (url.rstrip("/") + "/") if url else SLACK_API


class SlackBot:
    def __init__(
        self,
        core: Core,
        pacing: Pacing | None = None,
        jenkins_console: Callable[[StepRun], Awaitable[str | None]] | None = None,
    ) -> None:
        settings = core.settings
        assert settings.slack_bot_token is not None
        self.core = core
        self.env = CommandEnv(engine=core.engine, jenkins_console=jenkins_console)
        self.base_url = api_base(settings.slack_api_url)
        self.client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=self.base_url,
            timeout=API_TIMEOUT,
        )
        secret = settings.slack_signing_secret
        self.signing_secret = secret.get_secret_value() if secret is not None else ""
        self.app_token = (
            settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        )
        pacing = pacing or Pacing(lease_seconds=settings.lease_seconds)
        self.notifier = Notifier(self.client, pacing, owner=core.replica.id)
        self.bolt: AsyncApp | None = None
        self._http: Handler | None = None
        self._socket: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        identity = await self._check_token()
        self.bolt = self._build_bolt(identity)
        if self.signing_secret:  # Socket Mode may run without one: no /slack/events then
            self._http = events_handler(self.bolt, self.signing_secret)
        if self.app_token:
            await self._open_socket_mode()
        self.notifier.start()
        if self._socket is not None:
            self.spawn(self._socket.connect_async())  # retries on its own; never blocks the start
        log.info("Slack bot on (%s)", "Socket Mode" if self.app_token else "HTTP, /slack/events")
        yield
        if self._socket is not None:
            await self._socket.close_async()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop()

    async def _check_token(self) -> AsyncSlackResponse | None:
        try:
            res = await self.client.auth_test()
        except SlackApiError as err:
            status = err.response.status_code
            code = err.response.get("error")
            if status == 200:
                raise SlackStartupError(
                    f"invalid setting SLACK_BOT_TOKEN: Slack refused it ({code})"
                ) from None
            log.warning("Slack auth.test failed (HTTP %s, %s); going on", status, code)
            return None
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("cannot reach the Slack API at %s (%s); going on", self.base_url, err)
            return None
        return res

    def _build_bolt(self, identity: AsyncSlackResponse | None) -> AsyncApp:
        bolt = AsyncApp(
            client=self.client,
            signing_secret=self.signing_secret,
            request_verification_enabled=bool(self.signing_secret),
            process_before_response=False,
            logger=logging.getLogger("slack_bolt"),
        )
        if identity is not None:
            for middleware in bolt._async_middleware_list:  # no second auth.test per process
                if isinstance(middleware, AsyncSingleTeamAuthorization):
                    middleware.auth_test_result = identity
        bolt.command("/ansflow")(self._command_listener())
        for action_id, handler in ACTIONS.items():
            bolt.action(action_id)(self._action_listener(handler))
        return bolt

    async def _open_socket_mode(self) -> None:
        """Build the Socket Mode handler and get its first URL; a refused app token stops the start.

        slack_sdk's ``connect()`` retries a refused token every 10 s forever,
        which would hang the start, so the first ``apps.connections.open`` is ours.
        """
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert self.bolt is not None and self.app_token is not None
        handler: Any = AsyncSocketModeHandler(  # untyped in slack_bolt, like self._socket
            self.bolt, app_token=self.app_token, web_client=self.client
        )
        try:
            res = await self.client.apps_connections_open(app_token=self.app_token)
            handler.client.wss_uri = str(res["url"])
        except SlackApiError as err:
            status, code = err.response.status_code, err.response.get("error")
            if status == 200:
                await handler.close_async()
                raise SlackStartupError(
                    f"invalid setting SLACK_APP_TOKEN: Slack refused it ({code})"
                ) from None
            log.warning("Slack apps.connections.open failed (HTTP %s, %s); going on", status, code)
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("cannot reach the Slack API at %s (%s); going on", self.base_url, err)
        self._socket = handler

    # ---- HTTP and events ----------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        if self._http is None:
            return web.Response(status=503, text="Slack bot is starting")
        return await self._http(request)

    def on_event(self, event: Event) -> None:
        if event.run.channel_id:
            self.notifier.poke()

    # ---- listeners: ack first, work after -------------------------------------

    def _command_listener(self) -> Any:
        async def on_command(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            call = Invocation(
                user_id=str(body.get("user_id") or ""),
                channel_id=str(body.get("channel_id") or ""),
                text=str(body.get("text") or ""),
                response_url=body.get("response_url"),
            )
            self.spawn(self._answer_command(call))

        return on_command

    def _action_listener(self, handler: ActionHandler) -> Any:
        async def on_action(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            self.spawn(self._answer_click(click_of(body), handler))

        return on_action

    async def _answer_command(self, call: Invocation) -> None:
        reply = await dispatch(self.env, call)
        if reply is not None:
            await self.tell(call.user_id, call.channel_id, call.response_url, reply)

    async def _answer_click(self, click: Click, handler: ActionHandler) -> None:
        what = f"button {click.action_id}={click.value!r} by {click.user_id}"
        reply = await guarded(handler(self.env, click), what=what)
        if reply is not None:
            await self.tell(click.user_id, click.channel_id, click.response_url, reply)

    def spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Slack request handling failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tell(
        self, user_id: str, channel_id: str, response_url: str | None, message: Message
    ) -> None:
        """Show ``message`` to ``user_id`` only."""
        try:
            await self.client.chat_postEphemeral(
                channel=channel_id, user=user_id, **message.as_args()
            )
            return
        except (SlackApiError, TimeoutError, aiohttp.ClientError) as err:
            failure = err
        if not response_url:
            log.warning("could not answer %s privately: %s", user_id, failure)
            return
        try:
            await AsyncWebhookClient(response_url, timeout=API_TIMEOUT).send(
                response_type="ephemeral", replace_original=False, **message.as_args()
            )
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("could not answer %s privately: %s; %s", user_id, failure, err)
