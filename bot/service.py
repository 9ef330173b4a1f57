"""The Slack bot inside ``ansflow serve``: Web API client, Bolt app, listeners, notifier.

Every command and click is acknowledged first and handled in a background
task afterwards (``bot.listeners``); its private reply goes to the asker only
(``bot.replies``).
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

from bot.actions import ACTIONS, ActionHandler
from bot.commands import CommandEnv, guarded
from bot.config import SlackConfig
from bot.endpoint import Handler, events_handler
from bot.errors import SlackStartupError
from bot.forms import Forms
from bot.home import HomePublisher
from bot.home_actions import home_run_clicked
from bot.home_views import HOME_RUN_ACTION_ID
from bot.listeners import Listeners
from bot.notifier import Notifier, Pacing
from bot.replies import Replies
from bot.rerun import rerun_clicked
from bot.views import RERUN_ACTION_ID, Message
from engine.events import Event
from engine.services import Services
from storage.models import StepRun

log = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api/"
API_TIMEOUT = 10


def api_base(url: str | None) -> str:
    return (url.rstrip("/") + "/") if url else SLACK_API


class SlackBot:
    def __init__(
        self,
        core: Services,
        config: SlackConfig,
        pacing: Pacing | None = None,
        jenkins_console: Callable[[StepRun], Awaitable[str | None]] | None = None,
    ) -> None:
        self.core = core
        self.base_url = api_base(config.api_url)
        self.client = AsyncWebClient(
            token=config.bot_token,
            base_url=self.base_url,
            timeout=API_TIMEOUT,
        )
        self.signing_secret = config.signing_secret
        self.app_token = config.app_token
        pacing = pacing or Pacing(lease_seconds=config.lease_seconds)
        self.notifier = Notifier(self.client, pacing, owner=core.replica.id)
        self.home = HomePublisher(self.client, core.engine)
        self.notifier.home = self.home
        self.notifier.on_thread_set = core.engine.forget_rows
        # Signs the forms' private_metadata (Socket Mode may have no signing secret).
        key = self.signing_secret or config.bot_token
        self.forms = Forms(self.client, core.engine, key.encode(), self._run_for)
        self.env = CommandEnv(
            engine=core.engine, jenkins_console=jenkins_console, modals=self.forms
        )
        self.replies = Replies(self.client)
        self.listeners = Listeners(self.env, self.forms, self.home, self.replies, self.spawn)
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
        buttons: dict[str, ActionHandler] = {
            **ACTIONS,
            RERUN_ACTION_ID: rerun_clicked,
            HOME_RUN_ACTION_ID: home_run_clicked,
        }
        self.listeners.register(bolt, buttons)
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

    async def _run_for(
        self,
        user: str,
        channel: str | None,
        start: Callable[[str], Awaitable[Message | None]],
    ) -> None:
        """Start a run submitted from a form; ``channel`` None: the person's DM."""
        where = channel or await self.replies.dm(user)
        if where is None:
            return
        reply = await guarded(start(where), what=f"form run by {user}")
        if reply is not None:
            await self.replies.tell(user, where, None, reply)

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
