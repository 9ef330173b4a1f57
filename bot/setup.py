"""Plugs the Slack bot into the server (only when Slack is configured).

When Slack is off nothing is subscribed: no outbox rows are written and no
notifier runs, so nothing piles up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ansflow.jenkins_setup import JENKINS
from ansflow.wiring import Core
from bot.approval_outbox import write_approval_outbox
from bot.home import write_home_outbox
from bot.outbox import write_outbox
from bot.service import SlackBot
from engine.jenkins.logs import jenkins_console
from storage.models import StepRun

log = logging.getLogger(__name__)

SLACK_BOT: web.AppKey[SlackBot] = web.AppKey("slack_bot", SlackBot)


def _jenkins_console(
    app: web.Application, core: Core
) -> Callable[[StepRun], Awaitable[str | None]] | None:
    service = app.get(JENKINS)
    if service is None:
        return None

    async def read(step: StepRun) -> str | None:
        return await jenkins_console(service.clients, core.masker, step)

    return read


def setup_slack(app: web.Application, core: Core) -> None:
    if not core.settings.slack_enabled:
        log.info(
            "Slack is off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
            "(or SLACK_APP_TOKEN for Socket Mode) to enable it"
        )
        return
    bot = SlackBot(core, jenkins_console=_jenkins_console(app, core))
    app[SLACK_BOT] = bot
    core.bus.subscribe_in_tx(write_outbox)
    core.bus.subscribe_in_tx(write_approval_outbox)
    core.bus.subscribe_in_tx(write_home_outbox)
    core.bus.subscribe(bot.on_event)
    if bot.signing_secret:
        app.router.add_post("/slack/events", bot.handle_http)
    app.cleanup_ctx.append(bot.lifecycle)
