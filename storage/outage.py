"""Is this exception the database being unreachable, rather than a bug or bad data?

While PostgreSQL is down, restarting or refusing connections, queries fail
with connection errors from asyncpg or the socket layer; callers answer
"try again shortly" (REST: 503) instead of treating it as a bug. A
constraint violation, a syntax error or bad data is never an outage.

The asyncpg pool reconnects by itself once the server is back: a broken
connection is dropped on release and a new one is opened on the next
acquire, so nothing here needs to reset it.
"""

from __future__ import annotations

import sqlite3
import sys
from types import TracebackType
from typing import Any

from tortoise.exceptions import DBConnectionError, IntegrityError

# SQLSTATE classes and codes that mean "the server cannot serve now".
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite (through aiosqlite): the file cannot be opened, or another writer holds it too long.
_SQLITE_TRANSIENT = ("unable to open database file", "database is locked", "disk i/o error")
# Socket-level errors count only when they come from the database driver.
_DRIVER_MODULES = ("asyncpg", "tortoise", "aiosqlite", "sqlite3")
_MAX_CHAIN = 8


def is_database_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the database cannot be reached now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None or id(current) in seen:
            return False
        seen.add(id(current))
        verdict = _verdict(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return False


def _verdict(exc: BaseException) -> bool | None:
    """True/False when ``exc`` alone decides; None to look at its cause."""
    if isinstance(exc, IntegrityError | sqlite3.IntegrityError):
        return False
    if isinstance(exc, DBConnectionError):
        return True
    # asyncpg is looked up, not imported: until something loaded it (Tortoise's
    # PostgreSQL client does), no error can be one of its, and a process on
    # SQLite (``ansflow run``) does not pay for importing it.
    asyncpg: Any = sys.modules.get("asyncpg")
    if asyncpg is not None:
        if isinstance(exc, asyncpg.PostgresError):
            state = str(getattr(exc, "sqlstate", "") or "")
            return state.startswith(_UNAVAILABLE_STATES)
        if isinstance(exc, asyncpg.InterfaceError):
            text = str(exc).lower()
            return "closed" in text or "not connected" in text
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _SQLITE_TRANSIENT)
    if isinstance(exc, OSError | TimeoutError):
        return _raised_by_driver(exc.__traceback__) or None
    return None


def _raised_by_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in _DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False
