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
from bot import messages as say
from bot.actions import ACTIONS, ActionHandler, Click, click_of
from bot.commands import CommandEnv, Invocation, dispatch, guarded
from bot.endpoint import Handler, events_handler
from bot.errors import SlackStartupError
from bot.form_views import FORM_CALLBACK, PICKER_CALLBACK, input_block_ids, notice
from bot.forms import Answer, Forms
from bot.home import HomePublisher
from bot.home_actions import home_run_clicked
from bot.home_views import HOME_RUN_ACTION_ID
from bot.notifier import Notifier, Pacing
from bot.rerun import rerun_clicked
from bot.views import RERUN_ACTION_ID, Message, plain
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
        self.notifier = Notifier(self.client, pacing)
        self.home = HomePublisher(self.client, core.engine)
        self.notifier.home = self.home
        # Signs the forms' private_metadata (Socket Mode may have no signing secret).
        key = self.signing_secret or settings.slack_bot_token.get_secret_value()
        self.forms = Forms(self.client, core.engine, key.encode(), self._run_for)
        self.env = CommandEnv(
            engine=core.engine, jenkins_console=jenkins_console, modals=self.forms
        )
        self.bolt: AsyncApp | None = None
        self._http: Handler | None = None
        self._socket: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        identity = await self._check_token()
        self.bolt = self._build_bolt(identity)
        if self.signing_secret:  # Socket Mode may run without one: no /slack/events then
            self._http = events_handler(
                self.bolt, self.signing_secret, on_no_database=self._no_database
            )
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
        buttons: dict[str, ActionHandler] = {
            **ACTIONS,
            RERUN_ACTION_ID: rerun_clicked,
            HOME_RUN_ACTION_ID: home_run_clicked,
        }
        for action_id, handler in buttons.items():
            bolt.action(action_id)(self._action_listener(handler))
        bolt.view(FORM_CALLBACK)(self._view_listener(self.forms.form_submitted))
        bolt.view(PICKER_CALLBACK)(self._view_listener(self.forms.picker_submitted))
        bolt.event("app_home_opened")(self._home_listener())
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
        self.notifier.poke()  # run cards, and Home republishes of runs without a channel

    def _no_database(self, body: dict[str, Any]) -> web.StreamResponse:
        """The answer while the database is unreachable: private, within Slack's 3 s."""
        text = say.database_down()
        if body.get("command"):
            return web.json_response({"response_type": "ephemeral", "text": text})
        if body.get("type") == "view_submission":
            view = body.get("view") or {}
            blocks = input_block_ids(view)
            if blocks:
                return web.json_response({"response_action": "errors", "errors": {blocks[0]: text}})
            return web.json_response({"response_action": "update", "view": notice(text)})
        if body.get("type") == "block_actions":
            click = click_of(body)
            self.spawn(self.tell(click.user_id, click.channel_id, click.response_url, plain(text)))
        return web.Response(status=200)

    # ---- listeners: ack first, work after -------------------------------------

    def _command_listener(self) -> Any:
        async def on_command(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            call = Invocation(
                user_id=str(body.get("user_id") or ""),
                channel_id=str(body.get("channel_id") or ""),
                text=str(body.get("text") or ""),
                response_url=body.get("response_url"),
                trigger_id=body.get("trigger_id"),
            )
            self.spawn(self._answer_command(call))

        return on_command

    def _action_listener(self, handler: ActionHandler) -> Any:
        async def on_action(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            self.spawn(self._answer_click(click_of(body), handler))

        return on_action

    def _view_listener(self, handler: Callable[[dict[str, Any]], Answer]) -> Any:
        async def on_view(ack: Any, body: dict[str, Any]) -> None:
            try:
                answer = handler(body)
            except Exception:
                log.exception("form submission failed")
                answer = Answer({"response_action": "update", "view": notice(say.apology("form"))})
            await ack(**answer.ack)
            if answer.then is not None:
                self.spawn(answer.then)

        return on_view

    def _home_listener(self) -> Any:
        async def on_home(ack: Any, event: dict[str, Any]) -> None:
            await ack()
            user = str(event.get("user") or "")
            if user and event.get("tab", "home") == "home":
                self.spawn(self.home.opened(user))

        return on_home

    async def _run_for(
        self,
        user: str,
        channel: str | None,
        start: Callable[[str], Awaitable[Message | None]],
    ) -> None:
        """Start a run submitted from a form; ``channel`` None: the person's DM."""
        where = channel or await self._dm(user)
        if where is None:
            return
        reply = await guarded(start(where), what=f"form run by {user}")
        if reply is not None:
            await self.tell(user, where, None, reply)

    async def _dm(self, user: str) -> str | None:
        try:
            res = await self.client.conversations_open(users=user)
        except (SlackApiError, TimeoutError, aiohttp.ClientError) as err:
            log.warning("could not open a DM with %s: %s", user, err)
            return None
        return str((res.get("channel") or {}).get("id") or "") or None

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
        """Show ``message`` to ``user_id`` only (in their DM when there is no channel)."""
        failure: BaseException | None = None
        if channel_id:
            try:
                await self.client.chat_postEphemeral(
                    channel=channel_id, user=user_id, **message.as_args()
                )
                return
            except (SlackApiError, TimeoutError, aiohttp.ClientError) as err:
                failure = err
        if not response_url:
            await self._tell_in_dm(user_id, message, failure)
            return
        try:
            await AsyncWebhookClient(response_url, timeout=API_TIMEOUT).send(
                response_type="ephemeral", replace_original=False, **message.as_args()
            )
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("could not answer %s privately: %s; %s", user_id, failure, err)

    async def _tell_in_dm(
        self, user_id: str, message: Message, failure: BaseException | None
    ) -> None:
        dm = await self._dm(user_id)
        if dm is None:
            log.warning("could not answer %s privately: %s", user_id, failure)
            return
        try:
            await self.client.chat_postMessage(channel=dm, **message.as_args())
        except (SlackApiError, TimeoutError, aiohttp.ClientError) as err:
            log.warning("could not answer %s privately: %s; %s", user_id, failure, err)
