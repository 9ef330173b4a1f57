"""Telling "the database cannot be reached" apart from every other database error.

An outage is retried later (outcomes kept in memory, 503 to API clients); any
other error (a constraint, a bad query) is a bug or bad input and is not. A
change violates this module when it classifies an integrity or data error as
an outage: that would retry it for ever.
"""

from __future__ import annotations

import sqlite3

from tortoise.exceptions import DBConnectionError, IntegrityError

try:  # PostgreSQL support is an extra of tortoise-orm
    import asyncpg.exceptions as pg_errors

    _PG_OUTAGE: tuple[type[BaseException], ...] = (
        pg_errors.PostgresConnectionError,
        pg_errors.CannotConnectNowError,
        pg_errors.ConnectionDoesNotExistError,
        pg_errors.AdminShutdownError,
        pg_errors.CrashShutdownError,
        pg_errors.TooManyConnectionsError,
        pg_errors.InterfaceError,
    )
except ImportError:  # pragma: no cover - asyncpg is installed with the project
    _PG_OUTAGE = ()

_OUTAGE: tuple[type[BaseException], ...] = (
    DBConnectionError,
    ConnectionError,
    TimeoutError,
    OSError,
    *_PG_OUTAGE,
)
_WORDS = (
    "connection is closed",
    "connection was closed",
    "terminating connection",
    "pool is closed",
)
MAX_CHAIN = 10


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the database is out of reach."""
    seen: BaseException | None = exc
    for _ in range(MAX_CHAIN):
        if seen is None:
            return False
        if isinstance(seen, IntegrityError | sqlite3.IntegrityError):
            return False
        if isinstance(seen, _OUTAGE):
            return True
        text = str(seen).lower()
        if any(word in text for word in _WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
