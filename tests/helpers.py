"""Shared test helpers: settings, a real server on a free port, waiting for outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ansflow.app import CORE, build_app
from ansflow.settings import Settings, load_settings
from ansflow.wiring import Core

T = TypeVar("T")


def make_settings(database_url: str, pipelines_dir: Path, **env: str) -> Settings:
    values = {
        "ANSFLOW_DATABASE_URL": database_url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        # Never the repository's own ./workspaces: next to the test's pipelines.
        "ANSFLOW_WORKSPACES_DIR": str(pipelines_dir.parent / "workspaces"),
    }
    values.update(env)
    return load_settings(values)


@dataclass
class RunningServer:
    url: str  # base URL without trailing slash, e.g. http://127.0.0.1:PORT
    app: web.Application
    runner: web.AppRunner

    @property
    def core(self) -> Core:
        return self.app[CORE]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(settings: Settings, workdir: Path | None = None) -> RunningServer:
    """The real ``ansflow serve`` application on 127.0.0.1 and a free port."""
    app = build_app(settings, workdir=workdir)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningServer(f"http://127.0.0.1:{port}", app, runner)


@asynccontextmanager
async def serving(settings: Settings, workdir: Path | None = None) -> AsyncIterator[RunningServer]:
    server = await start_server(settings, workdir)
    try:
        yield server
    finally:
        await server.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ready: Callable[[T], bool] = bool,
    timeout: float = 15.0,
    interval: float = 0.02,
) -> T:
    """Poll ``probe`` until ``ready`` says yes; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not ready(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


def write_pipeline(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def pipeline_yaml(name: str, steps: str, extra: str = "") -> str:
    return f"name: {name}\n{extra}steps:\n{steps}"


Json = dict[str, Any]
