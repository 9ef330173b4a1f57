"""``ansflow serve``: the whole service in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from aiohttp import web

from ansflow.app import CORE, build_app
from ansflow.settings import Settings
from bot.errors import SlackStartupError
from storage.db import DatabaseError

log = logging.getLogger(__name__)


class StartupError(Exception):
    """Something a person must fix before the service can start; one line."""


async def _serve(settings: Settings) -> None:
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # close what started (the database) before reporting
        raise
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    log.info("ansflow listening on http://%s:%s", settings.host, settings.port)
    _freeze_startup_objects()
    stop = asyncio.Event()
    now = asyncio.Event()  # a second signal: stop without waiting for steps
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        (now if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled)
    try:
        await stop.wait()
        await _drain(app, settings, now)
    finally:
        log.info("shutting down")
        await runner.cleanup()


def _freeze_startup_objects() -> None:
    """What start-up made (modules, classes, schemas: most of the heap) lives as long as
    the process: moved out of the cyclic collector's sight, so that a full collection
    under load walks only what requests and runs made since (it took 40-70 ms here
    with them in it, a pause every request then waiting saw). Reference counting
    still frees them; only cycles among them would stay, and a collection runs first."""
    gc.collect()
    gc.freeze()


async def _drain(app: web.Application, settings: Settings, now: asyncio.Event) -> None:
    """Stop taking work; let running local steps finish (bounded); the rest is handed on."""
    core = app[CORE]
    log.info(
        "stopping: no new work here; waiting up to %gs for running steps", settings.drain_seconds
    )
    drained = asyncio.create_task(core.drain(settings.drain_seconds))
    interrupted = asyncio.create_task(now.wait())
    await asyncio.wait({drained, interrupted}, return_when=asyncio.FIRST_COMPLETED)
    for task in (drained, interrupted):
        task.cancel()
    await asyncio.gather(drained, interrupted, return_exceptions=True)


def serve(settings: Settings) -> int:
    try:
        asyncio.run(_serve(settings))
    except (DatabaseError, StartupError, SlackStartupError) as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return 1
    return 0
