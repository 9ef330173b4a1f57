"""A change counter on run rows, bumped by every UPDATE (as 0007 did for steps).

On PostgreSQL, without Slack, a step's end is written from the rows the engine
kept instead of reading them again; the round's statement checks that the
run's ``version`` is still the one kept (and locks the row), so a plan made
from a run that someone else changed meanwhile (a cancel, a take-over) loses
and is made again. Our own writes bump it in their statement; the trigger
bumps it for every other writer.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

SQLITE_UP = [
    "CREATE TRIGGER run_version AFTER UPDATE ON run FOR EACH ROW"
    " WHEN NEW.version = OLD.version"
    " BEGIN UPDATE run SET version = OLD.version + 1 WHERE id = NEW.id; END",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS run_version"]
POSTGRES_UP = [
    "CREATE OR REPLACE FUNCTION run_bump_version() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$",
    "CREATE TRIGGER run_version BEFORE UPDATE ON run FOR EACH ROW"
    " WHEN (NEW.version = OLD.version) EXECUTE FUNCTION run_bump_version()",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS run_version ON run",
    "DROP FUNCTION IF EXISTS run_bump_version()",
]


async def _run(schema_editor: Any, statements: list[str]) -> None:
    for statement in statements:  # one at a time (see 0007)
        await schema_editor.client.execute_query(statement)


async def add_trigger(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.client.capabilities.dialect == "postgres"
    await _run(schema_editor, POSTGRES_UP if postgres else SQLITE_UP)


async def drop_trigger(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.client.capabilities.dialect == "postgres"
    await _run(schema_editor, POSTGRES_DOWN if postgres else SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [("models", "0007_step_versions")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Run",
            name="version",
            # A database default: rows already there start at 0, and the release
            # before (which does not name the column) can still insert.
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.RunPython(add_trigger, drop_trigger),
    ]
