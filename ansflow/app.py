"""The aiohttp application of ``ansflow serve``: engine, Slack bot, REST API, poller.

Each part plugs in through one ``setup_*(app, core)`` function that adds its
routes and registers its start/stop in ``app.cleanup_ctx`` (docs/development.md).
Order matters: the database opens first and closes last; recovery runs once
every executor and subscriber is in place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from ansflow.metrics import setup_metrics
from ansflow.settings import Settings
from ansflow.wiring import Core, build_core
from bot.config import SlackConfig
from storage.db import close_db, open_db, ping

log = logging.getLogger(__name__)

CORE: web.AppKey[Core] = web.AppKey("core", Core)


async def healthz(request: web.Request) -> web.Response:
    """200 while the database answers; else 503 with the API's JSON error and Retry-After.

    A replica stopping (SIGTERM, draining its steps) answers 503 ``draining`` so
    that balancers send new requests to the others; it still serves what comes.
    """
    replica = request.app[CORE].replica
    if await ping():
        if replica.draining:
            body: dict[str, object] = {
                "error": "draining",
                "detail": "this replica is stopping",
                "status": "draining",
                "database": True,
            }
            return web.json_response(body, status=503)
        return web.json_response({"status": "ok", "database": True, "replica": replica.id})
    body = {
        "error": "database unavailable",
        "detail": "try again shortly",
        "status": "unavailable",
        "database": False,
    }
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


def slack_config(settings: Settings) -> SlackConfig | None:
    """The bot's settings, or None when Slack is off."""
    if not settings.slack_enabled or settings.slack_bot_token is None:
        return None
    secret = settings.slack_signing_secret
    app_token = settings.slack_app_token
    return SlackConfig(
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=secret.get_secret_value() if secret is not None else "",
        app_token=app_token.get_secret_value() if app_token else None,
        api_url=settings.slack_api_url,
        lease_seconds=settings.lease_seconds,
    )


def build_app(settings: Settings, *, workdir: Path | None = None) -> web.Application:
    from ansflow.jenkins_setup import setup_jenkins
    from ansflow.triggers_setup import setup_triggers
    from api.setup import setup_api
    from bot.setup import setup_slack

    app = web.Application(client_max_size=1024 * 1024)
    core = build_core(settings, workdir=workdir, port=settings.port)
    app[CORE] = core
    app.router.add_get("/healthz", healthz)
    metrics = setup_metrics(app, core.bus)
    core.engine.on_round_lost = metrics.rounds_lost.inc

    async def database(app: web.Application) -> AsyncIterator[None]:
        await open_db(settings.database_url)
        yield
        await close_db()

    async def engine(app: web.Application) -> AsyncIterator[None]:
        await core.start()  # registers the replica; adopts what dead replicas left
        yield
        await core.stop()

    app.cleanup_ctx.append(database)
    setup_jenkins(app, core)
    setup_slack(app, core.services, slack_config(settings))
    jwt = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else None
    setup_api(app, core.services, jwt)
    # Last in, first out: the engine stops before the parts above it.
    app.cleanup_ctx.append(engine)
    setup_triggers(app, core)  # after recovery: schedules and the concurrency sweep
    return app
