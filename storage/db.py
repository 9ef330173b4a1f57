"""Opening the database and applying migrations (Tortoise's built-in tooling)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import Any
from urllib.parse import urlsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext

log = logging.getLogger(__name__)

MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"


class DatabaseError(Exception):
    """The database cannot be used; ``str()`` is one line fit to print (no password)."""


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://") and "synchronous=" not in url:
        # WAL + synchronous=NORMAL: a crash of the process loses nothing committed;
        # only a power cut can lose the last commits. FULL fsyncs on every commit.
        return url + ("&" if "?" in url else "?") + "synchronous=NORMAL"
    return url


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def tortoise_config(url: str) -> dict[str, Any]:
    return {
        "connections": {"default": normalise_url(url)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def migrate(url: str) -> None:
    """Apply every migration not yet applied."""
    from tortoise.migrations.api import migrate as migrate_api

    config = tortoise_config(url)

    async def apply() -> None:
        # Its own context: the process's main context is initialised afterwards.
        async with TortoiseContext():
            await migrate_api(config=config)

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            await asyncio.wait_for(apply(), timeout=60)
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None
    except Exception as exc:
        if _looks_like_connection_problem(exc):
            raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None
        raise


def _looks_like_connection_problem(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("connect", "password authentication", "does not exist", "unable to open")
    )


async def open_db(url: str, *, apply_migrations: bool = True) -> None:
    """Migrate (optionally) and initialise Tortoise for this process."""
    if apply_migrations:
        await migrate(url)
    # Not wrapped in wait_for: Tortoise keeps its state in a context variable of
    # this task, and the global fallback lets later tasks (servers, jobs) see it.
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), timeout=30)
    except (OSError, TimeoutError, ConnectionError) as exc:
        await Tortoise.close_connections()
        raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None


async def close_db() -> None:
    await Tortoise.close_connections()
    # Tortoise caches SQL text per connection *name*, whatever the dialect; a later
    # open_db on another kind of database (tests switch SQLite/PostgreSQL) needs it gone.
    EXECUTOR_CACHE.clear()


async def ping() -> bool:
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), timeout=5)
    except Exception:  # health check: any failure means "not reachable"
        log.warning("database health check failed", exc_info=True)
        return False
    return True
