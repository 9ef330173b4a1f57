"""A change counter on step rows, bumped by every UPDATE.

The engine keeps the rows it has read and, at each step boundary, reads only
those whose ``version`` moved (``storage.runs.read_run_and_steps``). Our own
hot-path writes bump it in their statement; the trigger bumps it for every
other writer (the ORM, another release, a person with ``psql``), so a kept row
can never look current when it is not.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

SQLITE_UP = [
    "CREATE TRIGGER step_run_version AFTER UPDATE ON step_run FOR EACH ROW"
    " WHEN NEW.version = OLD.version"
    " BEGIN UPDATE step_run SET version = OLD.version + 1 WHERE id = NEW.id; END",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS step_run_version"]
POSTGRES_UP = [
    "CREATE OR REPLACE FUNCTION step_run_bump_version() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$",
    "CREATE TRIGGER step_run_version BEFORE UPDATE ON step_run FOR EACH ROW"
    " WHEN (NEW.version = OLD.version) EXECUTE FUNCTION step_run_bump_version()",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS step_run_version ON step_run",
    "DROP FUNCTION IF EXISTS step_run_bump_version()",
]


async def _run(schema_editor: Any, statements: list[str]) -> None:
    # One statement at a time (sqlite3's executescript would commit the migration's
    # transaction first).
    for statement in statements:
        await schema_editor.client.execute_query(statement)


async def add_trigger(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.client.capabilities.dialect == "postgres"
    await _run(schema_editor, POSTGRES_UP if postgres else SQLITE_UP)


async def drop_trigger(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.client.capabilities.dialect == "postgres"
    await _run(schema_editor, POSTGRES_DOWN if postgres else SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [("models", "0006_idempotency")]

    initial = False

    operations = [
        ops.AddField(
            model_name="StepRun",
            name="version",
            # A database default: rows already there start at 0, and the release
            # before (which does not name the column) can still insert.
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.RunPython(add_trigger, drop_trigger),
    ]
