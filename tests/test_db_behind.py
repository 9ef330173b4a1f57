"""A database one migration behind is brought up to date when it is opened.

``open_db`` skips the migrator only when every migration on disk is recorded
as applied. Here the newest migration is really undone (Tortoise's own
migrator, backwards), so the database looks like one made by the release
before: the next ``open_db`` must apply it, and the schema must come out as a
fresh database's.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

from tortoise import connections
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as migrate_api

from storage.db import (
    MIGRATIONS_TABLE,
    close_db,
    migration_names,
    open_db,
    schema_is_current,
    tortoise_config,
)


async def schema_shape() -> set[tuple[str, str]]:
    """(table, column) of every table of ours (Tortoise's records left out)."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        _, rows = await conn.execute_query(
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        )
    else:
        _, rows = await conn.execute_query(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    return {(str(r["t"]), str(r["c"])) for r in rows if r["t"] != MIGRATIONS_TABLE}


async def recorded() -> set[str]:
    _, rows = await connections.get("default").execute_query(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE app = 'models'"
    )
    return {str(r["name"]) for r in rows}


async def undo_newest_migration(url: str) -> str:
    """Migrate back to the migration before the newest; returns the newest's name."""
    *_, before, newest = sorted(migration_names())

    async def back() -> None:
        async with TortoiseContext():
            await migrate_api(config=tortoise_config(url), target=f"models.{before}")

    with contextlib.redirect_stdout(io.StringIO()):
        await back()
    return newest


async def test_a_database_one_migration_behind_is_migrated_at_open(database_url: str) -> None:
    await open_db(database_url)
    try:
        fresh = await schema_shape()
        assert await recorded() == migration_names()
    finally:
        await close_db()

    newest = await undo_newest_migration(database_url)

    await open_db(database_url, apply_migrations=False)
    try:
        conn = connections.get("default")
        assert await recorded() == migration_names() - {newest}
        assert not await schema_is_current(conn)
        behind = await schema_shape()
        assert behind != fresh  # the newest migration's tables/columns are really gone
    finally:
        await close_db()

    await open_db(database_url)
    try:
        assert await recorded() == migration_names()
        assert await schema_is_current(connections.get("default"))
        assert await schema_shape() == fresh
    finally:
        await close_db()


def test_ansflow_run_on_a_database_one_migration_behind_migrates_it_and_runs(
    tmp_path: Path,
) -> None:
    """The command itself, on a file the release before left: migrated, then the run."""
    import asyncio

    url = f"sqlite://{tmp_path / 'old.db'}"

    async def prepare() -> None:
        await open_db(url)
        await close_db()
        await undo_newest_migration(url)

    asyncio.run(prepare())
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "hello.yml").write_text("name: hello\nsteps:\n  - {name: greet, run: echo hi}\n")
    ansflow = Path(sys.executable).parent / "ansflow"
    done = subprocess.run(
        [str(ansflow), "run", "hello", "--pipelines", str(pipelines)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANSFLOW_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "[greet] hi" in done.stdout

    async def check() -> set[str]:
        await open_db(url, apply_migrations=False)
        try:
            return await recorded()
        finally:
            await close_db()

    assert asyncio.run(check()) == migration_names()


async def test_a_database_with_runs_one_migration_behind_is_migrated_and_keeps_them(
    database_url: str,
) -> None:
    """The newest migration on a database in use: its rows stay, and the release before
    (still running on another replica during a rolling upgrade) can still write."""
    await open_db(database_url)
    await close_db()
    await undo_newest_migration(database_url)

    def old_release_writes(run_id: int) -> list[str]:
        """A run and a step as the release before inserts them: its own columns only."""
        return [
            "INSERT INTO run (id, pipeline, definition, parameters, status, trigger_type,"
            " triggered_by, source, created_at) VALUES"
            f" ({run_id}, 'p', '{{}}', '{{}}', 'success', 'manual', 'U1', 'cli', CURRENT_TIMESTAMP)",
            "INSERT INTO step_run (run_id, path, position, name, kind, status, log, log_tail,"
            f" log_dropped, attempt) VALUES ({run_id}, '0', 0, 'a', 'shell', 'success',"
            " 'hi', 'hi', 0, 0)",
        ]

    await open_db(database_url, apply_migrations=False)
    try:
        for statement in old_release_writes(1):
            await connections.get("default").execute_query(statement)
    finally:
        await close_db()

    await open_db(database_url)  # migrates
    try:
        conn = connections.get("default")
        assert await schema_is_current(conn)
        for statement in old_release_writes(2):  # the release before, after the upgrade
            await conn.execute_query(statement)
        _, rows = await conn.execute_query("SELECT run_id, log FROM step_run ORDER BY run_id")
        assert [(int(r["run_id"]), r["log"]) for r in rows] == [(1, "hi"), (2, "hi")]
    finally:
        await close_db()
