"""Plugs the Slack bot into the server."""

from __future__ import annotations

import logging

from aiohttp import web

from ansflow.wiring import Core

log = logging.getLogger(__name__)


def setup_slack(app: web.Application, core: Core) -> None:
    if not core.settings.slack_enabled:
        log.info(
            "Slack is off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
            "(or SLACK_APP_TOKEN for Socket Mode) to enable it"
        )
