"""Opening the database: migrations are skipped only when every one is recorded as applied."""

from __future__ import annotations

import asyncpg
import pytest
from tortoise import connections

from storage import db
from storage.db import (
    DatabaseError,
    close_db,
    connect_options,
    migration_names,
    open_db,
    schema_is_current,
)


async def table_names() -> set[str]:
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        _, rows = await conn.execute_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    else:
        _, rows = await conn.execute_query(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        )
    return {row["name"] for row in rows}


def test_the_shipped_migrations_are_found_as_tortoise_finds_them() -> None:
    names = migration_names()
    assert "0001_initial" in names
    assert not any(name.startswith(("_", "~")) for name in names)


async def test_a_fresh_database_is_migrated_then_current_until_a_new_migration(
    database_url: str,
) -> None:
    await open_db(database_url)
    try:
        conn = connections.get("default")
        assert {"run", "step_run", "approval", "tortoise_migrations"} <= await table_names()
        assert await schema_is_current(conn)
        assert not await schema_is_current(conn, migration_names() | {"0099_new"})
    finally:
        await close_db()


async def test_a_migration_not_recorded_is_applied_at_the_next_open(database_url: str) -> None:
    await open_db(database_url)
    try:
        conn = connections.get("default")
        # As if 0001 had never run: its tables and its record gone.
        cascade = "" if conn.capabilities.dialect == "sqlite" else " CASCADE"
        for table in (await table_names()) - {"tortoise_migrations"}:
            await conn.execute_script(f'DROP TABLE IF EXISTS "{table}"{cascade}')
        await conn.execute_query("DELETE FROM tortoise_migrations WHERE app = 'models'")
        assert not await schema_is_current(conn)
    finally:
        await close_db()
    await open_db(database_url)
    try:
        conn = connections.get("default")
        assert {"run", "step_run", "approval", "cicd_tool"} <= await table_names()
        assert await schema_is_current(conn)
    finally:
        await close_db()


async def test_a_database_without_migration_records_is_not_current(sqlite_url: str) -> None:
    await open_db(sqlite_url, apply_migrations=False)
    try:
        assert not await schema_is_current(connections.get("default"))
    finally:
        await close_db()


@pytest.mark.postgres
async def test_a_migration_waits_its_turn_then_gives_up_with_one_line(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "MIGRATION_LOCK_WAIT", 1.0)
    holder = await asyncpg.connect(**connect_options(pg_url))
    try:
        # Another process migrating: it holds the lock.
        await holder.execute("SELECT pg_advisory_lock($1)", db.MIGRATION_LOCK_KEY)
        with pytest.raises(DatabaseError, match="another process has been migrating") as raised:
            await db.migrate(pg_url)
        assert "\n" not in str(raised.value)
        await holder.execute("SELECT pg_advisory_unlock($1)", db.MIGRATION_LOCK_KEY)
        await db.migrate(pg_url)  # its turn: applied
        await open_db(pg_url, apply_migrations=False)
        try:
            assert await schema_is_current(connections.get("default"))
        finally:
            await close_db()
    finally:
        await holder.close()
