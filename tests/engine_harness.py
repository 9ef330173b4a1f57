"""An engine on a real database, for tests that drive it without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ansflow.wiring import Core, build_core
from engine.events import Event, RunSnapshot
from engine.permissions import Actor
from engine.runner import RunRequest
from storage.db import close_db, open_db
from tests.helpers import make_settings

CLI = Actor("cli:test", trusted=True)


@asynccontextmanager
async def engine_on(
    database_url: str, pipelines_dir: Path, workdir: Path | None = None, **env: str
) -> AsyncIterator[Core]:
    settings = make_settings(database_url, pipelines_dir, **env)
    await open_db(settings.database_url)
    core = build_core(settings, workdir=workdir, adopts=True)
    try:
        yield core
    finally:
        await core.stop()
        await close_db()


async def run_to_end(
    core: Core, pipeline: str, params: dict[str, str] | None = None, timeout: float = 30
) -> RunSnapshot:
    started = await core.engine.start_run(RunRequest(pipeline, params or {}, CLI))
    return await core.engine.wait_finished(started.id, timeout=timeout)


class Recorder:
    """Collects every event the bus publishes after commit."""

    def __init__(self, core: Core) -> None:
        self.events: list[Event] = []
        core.bus.subscribe(self.events.append)

    def types(self) -> list[str]:
        return [e.type for e in self.events]
