"""The aiohttp application of ``ansflow serve``: engine, Slack bot, REST API, poller.

Each part plugs in through one ``setup_*(app, core)`` function that adds its
routes and registers its start/stop in ``app.cleanup_ctx`` (STYLE.md 9).
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
from storage.db import close_db, open_db, ping

log = logging.getLogger(__name__)

CORE: web.AppKey[Core] = web.AppKey("core", Core)


async def healthz(request: web.Request) -> web.Response:
    reachable = await ping()
    body = {"status": "ok" if reachable else "unavailable", "database": reachable}
    return web.json_response(body, status=200 if reachable else 503)


def build_app(settings: Settings, *, workdir: Path | None = None) -> web.Application:
    from ansflow.jenkins_setup import setup_jenkins
    from api.setup import setup_api
    from bot.setup import setup_slack

    app = web.Application(client_max_size=1024 * 1024)
    core = build_core(settings, workdir=workdir)
    app[CORE] = core
    app.router.add_get("/healthz", healthz)
    setup_metrics(app, core.bus)

    async def database(app: web.Application) -> AsyncIterator[None]:
        await open_db(settings.database_url)
        yield
        await close_db()

    async def engine(app: web.Application) -> AsyncIterator[None]:
        recovered = await core.engine.recover()
        if recovered:
            log.info("recovered %s unfinished run(s)", recovered)
        core.start()
        yield
        await core.stop()

    app.cleanup_ctx.append(database)
    setup_jenkins(app, core)
    setup_slack(app, core)
    setup_api(app, core)
    # Last in, first out: the engine stops before the parts above it.
    app.cleanup_ctx.append(engine)
    return app
