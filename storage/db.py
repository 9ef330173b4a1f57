"""Opening the database and applying migrations (Tortoise's built-in tooling)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import io
import logging
import pkgutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext

log = logging.getLogger(__name__)

MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"
MIGRATIONS_TABLE = "tortoise_migrations"  # where Tortoise records applied migrations
# Tortoise's SQLite client, with a transaction's statements inline (storage/sqlite_client.py).
SQLITE_ENGINE = "storage.sqlite_client"


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


async def keep_session(connection: Any) -> None:
    """How a pooled PostgreSQL connection is reset when a query gives it back: not at all.

    asyncpg's default resets every session on release (advisory locks,
    cursors, ``LISTEN``, settings: one more round trip per query), and we use
    none of those on pooled connections (the replicas' ``LISTEN`` has its own).
    asyncpg still rolls back a transaction left open before this is called.
    """


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "asyncpg://"))


def connection_config(url: str) -> str | dict[str, Any]:
    """The ``default`` connection as Tortoise takes it."""
    normalised = normalise_url(url)
    is_postgres = is_postgres_url(normalised)
    if not is_postgres and not normalised.startswith("sqlite://"):
        return normalised
    from tortoise.backends.base.config_generator import expand_db_url

    expanded: dict[str, Any] = expand_db_url(normalised)
    if is_postgres:
        credentials = expanded["credentials"]
        credentials["reset"] = keep_session
        if "sslmode" in credentials:  # libpq's spelling; asyncpg takes the mode as ``ssl``
            credentials["ssl"] = credentials.pop("sslmode")
        elif "ssl" in credentials:
            # Tortoise reads ``?ssl=`` as bool(text): "false" would turn TLS on.
            credentials["ssl"] = _ssl_flag(normalised)
    else:
        expanded["engine"] = SQLITE_ENGINE
    return expanded


def _ssl_flag(url: str) -> bool:
    values = parse_qs(urlsplit(url).query).get("ssl", [""])
    return values[-1].strip().lower() not in ("", "0", "false", "no", "off")


def connect_options(url: str) -> dict[str, Any]:
    """How a connection of its own (the replicas' listener, the migration lock) connects:
    as the pool's connections do.

    Read from the URL as Tortoise reads it for the pool (host or socket folder
    ``?host=/run/postgresql``, port, user, the password decoded, database,
    ``?ssl=``, ``?application_name=``), less what only concerns a pool
    (``maxsize``, ``minsize``, ...): a URL the pool connects with, the
    others connect with too.
    """
    config = connection_config(url)
    if not is_postgres_url(url) or not isinstance(config, dict):
        raise ValueError("not a PostgreSQL URL")
    credentials = dict(config["credentials"])
    settings = dict(credentials.pop("server_settings", None) or {})
    name = credentials.pop("application_name", None)
    if name:
        settings["application_name"] = name
    accepted = _connect_parameters()
    options = {key: value for key, value in credentials.items() if key in accepted}
    if settings:
        options["server_settings"] = settings
    return options


@functools.cache
def _connect_parameters() -> frozenset[str]:
    import asyncpg

    names = set(inspect.signature(asyncpg.connect).parameters)
    return frozenset(names - {"dsn", "loop", "connection_class", "record_class"})


def tortoise_config(url: str) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(url)},
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
    """Apply every migration not yet applied.

    On PostgreSQL one process at a time: replicas started together on a new
    database would otherwise each create the same tables, and all but one
    fail. The others wait for the lock (at most ``MIGRATION_LOCK_WAIT``), then
    find nothing left to apply.
    """
    from tortoise.migrations.api import migrate as migrate_api

    config = tortoise_config(url)

    async def apply() -> None:
        # Its own context: the process's main context is initialised afterwards.
        async with TortoiseContext():
            await migrate_api(config=config)

    try:
        async with _migration_lock(url):
            with contextlib.redirect_stdout(io.StringIO()):
                await asyncio.wait_for(apply(), timeout=60)
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None
    except Exception as exc:
        if _looks_like_connection_problem(exc):
            raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None
        raise


# Held (a PostgreSQL advisory lock, on a connection of its own) while migrating.
MIGRATION_LOCK_KEY = 0x616E73666C6F77  # "ansflow"
MIGRATION_LOCK_WAIT = 120.0  # seconds; a migration itself is given 60


@contextlib.asynccontextmanager
async def _migration_lock(url: str) -> AsyncIterator[None]:
    if not is_postgres_url(url):
        yield  # SQLite: its own write lock already lets one process at a time
        return
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(**connect_options(url)), timeout=30)
    try:
        try:
            await asyncio.wait_for(
                conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY),
                timeout=MIGRATION_LOCK_WAIT,
            )
        except TimeoutError:
            raise DatabaseError(
                f"another process has been migrating {redact(url)} for over "
                f"{MIGRATION_LOCK_WAIT:.0f} s; not waiting longer"
            ) from None
        yield
    finally:
        # Closing the session releases the lock, whatever happened meanwhile.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=5)
        conn.terminate()


def _looks_like_connection_problem(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("connect", "password authentication", "does not exist", "unable to open")
    )


def migration_names() -> set[str]:
    """The migrations on disk, found as Tortoise's loader finds them."""
    package = importlib.import_module(MIGRATIONS_MODULE)
    return {
        name
        for _, name, is_pkg in pkgutil.iter_modules(package.__path__)
        if not is_pkg and name[0] not in "_~"
    }


async def schema_is_current(conn: BaseDBAsyncClient, expected: set[str] | None = None) -> bool:
    """Every migration on disk (or ``expected``) is recorded as applied (Tortoise's records).

    Any doubt (no records table yet, a query error, a migration not recorded)
    answers False, and the caller applies migrations as before.
    """
    table = '"' + MIGRATIONS_TABLE + '"'
    try:
        _, rows = await asyncio.wait_for(
            conn.execute_query(
                f"SELECT name FROM {table} WHERE app = 'models'"  # noqa: S608  (constants)
            ),
            timeout=30,
        )
    except Exception:  # missing table or anything else: let the migrator decide
        return False
    applied = {str(row["name"]) for row in rows}
    return (migration_names() if expected is None else expected) <= applied


async def open_db(url: str, *, apply_migrations: bool = True) -> None:
    """Initialise Tortoise for this process; apply migrations unless all are applied.

    The check is one query of Tortoise's migration records; the migrator (which
    loads every migration module) runs only when one is missing.
    """
    # Not wrapped in wait_for: Tortoise keeps its state in a context variable of
    # this task, and the global fallback lets later tasks (servers, jobs) see it.
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    conn = connections.get("default")
    try:
        await asyncio.wait_for(conn.execute_query("SELECT 1"), timeout=30)
    except (OSError, TimeoutError, ConnectionError) as exc:
        await Tortoise.close_connections()
        raise DatabaseError(f"cannot reach the database at {redact(url)}: {exc}") from None
    if apply_migrations and not await schema_is_current(conn):
        try:
            await migrate(url)
        except BaseException:
            await Tortoise.close_connections()
            raise


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
