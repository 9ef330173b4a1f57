"""Plugs the REST API and WebSocket into the server.

Routes live under ``/api/v1/``; every one but ``openapi.json`` needs a bearer
token (``api.auth``). Errors are JSON (``api.errors``). The WebSocket hub
subscribes to the engine's bus after commit for the life of the app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api import hooks_pipelines, routes_approvals, routes_catalog, routes_executions, ws
from api.auth import auth_middleware
from api.common import SERVICES, PipelineCache
from api.errors import error_middleware, remember_prepared
from api.hub import Hub
from api.inputs import input_guard
from api.openapi import add_routes as add_openapi
from api.remote import remote_event_handler
from engine.services import Services

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32


def setup_api(app: web.Application, core: Services, jwt_secret: str | None) -> None:
    """``jwt_secret`` None or empty: the API refuses every request."""
    secret = jwt_secret or None
    if secret is None:
        log.info("REST API refuses all requests: set ANSFLOW_JWT_SECRET to enable it")
    elif len(secret.encode()) < MIN_SECRET_BYTES:
        log.warning(
            "ANSFLOW_JWT_SECRET is shorter than %s bytes; use a longer random one", MIN_SECRET_BYTES
        )
    app.middlewares.append(error_middleware)
    app.on_response_prepare.append(remember_prepared)
    app.middlewares.append(input_guard)
    app.middlewares.append(auth_middleware(secret))
    app[SERVICES] = core
    hub = Hub(core.engine.admins)
    app[ws.HUB] = hub
    routes_executions.add_routes(app, PipelineCache())
    routes_approvals.add_routes(app)
    routes_catalog.add_routes(app)
    ws.add_routes(app)
    hooks_pipelines.add_routes(app)
    add_openapi(app)

    async def websocket_hub(app: web.Application) -> AsyncIterator[None]:
        core.bus.subscribe(hub.on_event)
        if core.signals is not None:
            core.signals.subscribe_remote(remote_event_handler(hub))
        yield
        core.bus.unsubscribe(hub.on_event)
        hub.close_all()

    async def close_websockets(app: web.Application) -> None:
        hub.close_all()

    app.cleanup_ctx.append(websocket_hub)
    app.on_shutdown.append(close_websockets)
