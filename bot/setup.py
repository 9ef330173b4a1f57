"""Plugs the Slack bot into the server (only when Slack is configured).

When Slack is off nothing is subscribed: no outbox rows are written and no
notifier runs, so nothing piles up.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.approval_outbox import write_approval_outbox
from bot.config import SlackConfig
from bot.home import write_home_outbox
from bot.outbox import write_outbox
from bot.service import SlackBot
from engine.services import Services

log = logging.getLogger(__name__)

SLACK_BOT: web.AppKey[SlackBot] = web.AppKey("slack_bot", SlackBot)


def setup_slack(app: web.Application, core: Services, config: SlackConfig | None) -> None:
    """``config`` None: Slack is off."""
    if config is None:
        log.info(
            "Slack is off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
            "(or SLACK_APP_TOKEN for Socket Mode) to enable it"
        )
        return
    bot = SlackBot(core, config, jenkins_console=core.jenkins_console)
    app[SLACK_BOT] = bot
    core.bus.subscribe_in_tx(write_outbox)
    core.bus.subscribe_in_tx(write_approval_outbox)
    core.bus.subscribe_in_tx(write_home_outbox)
    core.bus.subscribe(bot.on_event)
    if bot.signing_secret:
        app.router.add_post("/slack/events", bot.handle_http)
    app.cleanup_ctx.append(bot.lifecycle)
