"""Plugs the REST API and WebSocket into the server."""

from __future__ import annotations

import logging

from aiohttp import web

from ansflow.wiring import Core

log = logging.getLogger(__name__)


def setup_api(app: web.Application, core: Core) -> None:
    if core.settings.jwt_secret is None:
        log.info("REST API refuses all requests: set ANSFLOW_JWT_SECRET to enable it")
