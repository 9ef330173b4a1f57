"""Plugs schedules and the concurrency-group sweep into the server.

Start (once the database is open and runs are recovered): an
``AsyncIOScheduler`` gets a job that follows the pipeline files' schedules
(``engine/scheduler.py``), each schedule's own fire jobs, and a sweep that
hands on concurrency groups whose holder ended without doing so. Stop: the
jobs go first, then the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ansflow.wiring import Core
from engine.scheduler import Schedules

log = logging.getLogger(__name__)

SYNC_INTERVAL = 2.0
SWEEP_INTERVAL = 5.0

SCHEDULES: web.AppKey[Schedules] = web.AppKey("schedules", Schedules)


def setup_triggers(app: web.Application, core: Core) -> None:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        scheduler = AsyncIOScheduler(timezone=UTC)
        schedules = Schedules(core.engine, scheduler, core.settings.schedule_grace)
        app[SCHEDULES] = schedules
        scheduler.start()
        started = datetime.now(UTC)
        scheduler.add_job(
            schedules.sync,
            "interval",
            seconds=SYNC_INTERVAL,
            id="schedules-sync",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=started,
        )
        scheduler.add_job(
            _sweep(core),
            "interval",
            seconds=SWEEP_INTERVAL,
            id="concurrency-sweep",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=started,
        )
        yield
        scheduler.pause()
        schedules.stop()
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)

    app.cleanup_ctx.append(lifecycle)


def _sweep(core: Core) -> Callable[[], Awaitable[None]]:
    async def sweep() -> None:
        moved = await core.engine.concurrency.sweep()
        if moved:
            log.info("concurrency groups: %s queued run(s) moved on", moved)

    return sweep
