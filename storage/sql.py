"""Hand-written SQL for the engine's hot path, each statement shape built once.

The ORM builds every query anew: about 0.4 ms of Python per statement, twenty
times what SQLite needs to run it. The engine issues the same few shapes (a
compare-and-set, the run and its steps, a run's creation) thousands of times,
so those are written here as parameterised SQL, cached by shape, and sent
through Tortoise's own connection (so they join its transactions). PostgreSQL
prepares each text once per connection (asyncpg's statement cache).

Values go through each field's own ``to_db_value`` and rows come back through
the model's ``_init_from_db``, so what is stored and read is exactly what the
ORM would store and read; the ORM stays for everything else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.base import Field
from tortoise.models import Model

M = TypeVar("M", bound=Model)

# Rows per multi-row INSERT: far below SQLite's and PostgreSQL's parameter limits.
INSERT_CHUNK = 200
_PLACEHOLDER = re.compile(r"\?")


@dataclass(frozen=True)
class Table:
    name: str
    # Every stored column but the generated primary key, in a fixed order.
    columns: tuple[str, ...]
    fields: dict[str, Field[Any]]
    select_list: str


@functools.cache
def table_of(model: type[Model]) -> Table:
    meta = model._meta
    columns = tuple(c for c in meta.fields_db_projection.values() if c != meta.db_pk_column)
    by_column = {
        column: meta.fields_map[name] for name, column in meta.fields_db_projection.items()
    }
    select_list = ",".join(f'"{c}"' for c in (meta.db_pk_column, *columns))
    return Table(meta.db_table, columns, by_column, select_list)


@functools.cache
def _render(template: str, dialect: str) -> str:
    """``?`` placeholders as the driver wants them (``$1, $2, …`` for asyncpg)."""
    return render_for(dialect, template)


def render(conn: BaseDBAsyncClient, template: str) -> str:
    """A ``?`` template as ``conn``'s driver wants it (cached: for fixed shapes)."""
    return _render(template, conn.capabilities.dialect)


def render_for(dialect: str, template: str) -> str:
    """:func:`render` without the cache, for statements whose shape varies."""
    if dialect != "postgres":
        return template
    numbers = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", template)


def _marks(count: int) -> str:
    return ",".join("?" * count)


@functools.cache
def update_template(
    table: str, columns: tuple[str, ...], where: str, counter: str | None = None
) -> str:
    sets = [f'"{c}"=?' for c in columns]
    if counter is not None:
        sets.append(f'"{counter}"="{counter}"+1')
    # Our names and conditions only:
    return f'UPDATE "{table}" SET {",".join(sets)} WHERE {where}'  # noqa: S608


def db_values(model: type[Model], changes: dict[str, Any]) -> list[Any]:
    fields = table_of(model).fields
    return [fields[name].to_db_value(value, model) for name, value in changes.items()]


async def update(
    conn: BaseDBAsyncClient,
    model: type[Model],
    changes: dict[str, Any],
    where: str,
    where_values: Sequence[Any],
    counter: str | None = None,
) -> int:
    """``UPDATE … SET changes WHERE where``; the number of rows changed.

    ``where`` is SQL with ``?`` placeholders, written by us (never user text).
    ``counter`` names an integer column the statement also adds one to.
    """
    template = update_template(table_of(model).name, tuple(changes), where, counter)
    count, _ = await conn.execute_query(
        render(conn, template), [*db_values(model, changes), *where_values]
    )
    return int(count)


async def select(
    conn: BaseDBAsyncClient,
    model: type[M],
    where: str,
    values: Sequence[Any],
    order_by: str | None = None,
) -> list[M]:
    """Whole rows of ``model`` as model instances."""
    table = table_of(model)
    template = _select_template(table.name, table.select_list, where, order_by)
    _, rows = await conn.execute_query(render(conn, template), list(values))
    return [model._init_from_db(**dict(row)) for row in rows]


@functools.cache
def _select_template(table: str, select_list: str, where: str, order_by: str | None) -> str:
    order = f" ORDER BY {order_by}" if order_by else ""
    return f'SELECT {select_list} FROM "{table}" WHERE {where}{order}'  # noqa: S608  (ours)


async def insert(conn: BaseDBAsyncClient, instances: Iterable[M]) -> list[M]:
    """Insert new instances (all of one model); each gets its id. Returns them in order."""
    pending = list(instances)
    for start in range(0, len(pending), INSERT_CHUNK):
        chunk = pending[start : start + INSERT_CHUNK]
        table = table_of(type(chunk[0]))
        values: list[Any] = []
        for instance in chunk:
            values += _row_values(table, instance)
        template = _insert_template(table.name, table.columns, len(chunk))
        # (execute_query_dict: asyncpg's execute_query drops an INSERT's RETURNING rows.)
        rows = await conn.execute_query_dict(render(conn, template), values)
        _got_ids(table, chunk, [int(row["id"]) for row in rows])
    return pending


async def insert_with_children(
    conn: BaseDBAsyncClient, parent: Model, children: Sequence[Model], foreign_key: str
) -> None:
    """Insert ``parent`` and its new ``children``, whose ``foreign_key`` column is set
    to the parent's id; each gets its id.

    On PostgreSQL one statement (the children's rows name the parent's new id
    through a data-modifying CTE); elsewhere, or with many children, two or more.
    """
    if conn.capabilities.dialect != "postgres" or not children or len(children) > INSERT_CHUNK:
        await insert(conn, [parent])
        for child in children:
            setattr(child, foreign_key, parent.pk)
        await insert(conn, children)
        return
    table, child_table = table_of(type(parent)), table_of(type(children[0]))
    values = _row_values(table, parent)
    for child in children:
        values += _row_values(child_table, child, leave_out=foreign_key)
    template = _family_template(
        table.name, table.columns, child_table.name, child_table.columns, foreign_key, len(children)
    )
    _, rows = await conn.execute_query(render(conn, template), values)
    _got_ids(table, [parent], [int(rows[0][0])])
    _got_ids(child_table, children, [int(row[1]) for row in rows])
    for child in children:
        setattr(child, foreign_key, parent.pk)


async def reserve_ids(
    conn: BaseDBAsyncClient, parent: type[Model], child: type[Model], children: int
) -> tuple[int, list[int]]:
    """New ids for a ``parent`` row and its ``children`` rows, from their tables'
    sequences (PostgreSQL; nothing is written): rows that know their ids can be
    inserted, and told of, in the same one statement (:func:`insert_family_template`)."""
    template = _reserve_template(table_of(parent).name, table_of(child).name)
    _, rows = await conn.execute_query(render(conn, template), [children])
    return int(rows[0][0]), sorted(int(i) for i in rows[0][1])


@functools.cache
def _reserve_template(table: str, child_table: str) -> str:
    def next_id(name: str) -> str:
        return f"nextval(pg_get_serial_sequence('\"{name}\"', 'id'))"

    children = f"ARRAY(SELECT {next_id(child_table)} FROM generate_series(1, ?))"  # noqa: S608
    return f"SELECT {next_id(table)}, {children}"


def family_values(parent: Model, children: Sequence[Model]) -> list[Any]:
    """The values of :func:`insert_family_template`: each row's id, then its columns."""
    table = table_of(type(parent))
    values = [parent.pk, *_row_values(table, parent)]
    if children:
        child_table = table_of(type(children[0]))
        for child in children:
            values += [child.pk, *_row_values(child_table, child)]
    return values


@functools.lru_cache(maxsize=64)
def insert_family_template(parent: type[Model], child: type[Model], children: int) -> str:
    """CTEs inserting a parent row and its children, ids given (``reserve_ids``):
    ``p AS (…), c AS (…)``, for a statement that goes on from there."""
    table, child_table = table_of(parent), table_of(child)
    parts = [f"p AS ({_insert_with_ids(table, 1)})"]
    if children:
        parts.append(f"c AS ({_insert_with_ids(child_table, children)})")
    return ", ".join(parts)


def _insert_with_ids(table: Table, rows: int) -> str:
    names = ",".join(f'"{c}"' for c in ("id", *table.columns))
    row = f"({_marks(len(table.columns) + 1)})"
    return f'INSERT INTO "{table.name}" ({names}) VALUES {",".join([row] * rows)}'  # noqa: S608


def _row_values(table: Table, instance: Model, leave_out: str | None = None) -> list[Any]:
    return [
        table.fields[column].to_db_value(
            getattr(instance, table.fields[column].model_field_name), instance
        )
        for column in table.columns
        if column != leave_out
    ]


def _got_ids(table: Table, instances: Sequence[Model], ids: list[int]) -> None:
    # RETURNING order is not promised: ids follow the order the rows went in.
    if len(ids) != len(instances):
        raise RuntimeError(f"inserted {len(instances)} rows into {table.name}, got {len(ids)} ids")
    for instance, new_id in zip(instances, sorted(ids), strict=True):
        instance.id = new_id
        instance._saved_in_db = True


@functools.cache
def _insert_template(table: str, columns: tuple[str, ...], rows: int) -> str:
    names = ",".join(f'"{c}"' for c in columns)
    row = f"({_marks(len(columns))})"
    rows_sql = ",".join([row] * rows)
    return f'INSERT INTO "{table}" ({names}) VALUES {rows_sql} RETURNING "id"'  # noqa: S608


@functools.lru_cache(maxsize=64)
def _family_template(
    table: str,
    columns: tuple[str, ...],
    child_table: str,
    child_columns: tuple[str, ...],
    foreign_key: str,
    children: int,
) -> str:
    """A parent row and its children's in one PostgreSQL statement; each row of the
    answer is the parent's id and one child's."""
    parent = _insert_template(table, columns, 1)
    names = ",".join(f'"{c}"' for c in child_columns)
    marks = ['(SELECT "id" FROM p)' if c == foreign_key else "?" for c in child_columns]
    rows_sql = ",".join([f"({','.join(marks)})"] * children)
    children_sql = f'INSERT INTO "{child_table}" ({names}) VALUES {rows_sql} RETURNING "id"'  # noqa: S608
    return f'WITH p AS ({parent}), c AS ({children_sql}) SELECT (SELECT "id" FROM p), c."id" FROM c'  # noqa: S608


async def select_with_children(
    conn: BaseDBAsyncClient,
    parent: type[M],
    child: type[Model],
    foreign_key: str,
    order_by: str,
    parent_id: int,
    leave_out: tuple[str, ...] = (),
) -> tuple[M, list[Any]] | None:
    """One row of ``parent`` and its ``child`` rows in one statement (a LEFT JOIN).

    The children's ``leave_out`` columns are not read: their objects lack those
    attributes (reading one raises ``AttributeError``), so none must be saved whole.
    """
    columns = child_columns(child, leave_out)
    template = _join_template(parent, child, foreign_key, order_by, columns)
    _, rows = await conn.execute_query(render(conn, template), [parent_id])
    if not rows:
        return None
    parent_columns = ("id", *table_of(parent).columns)
    # By position: the parent's columns, then the child's, as the template chose them.
    width = len(parent_columns)
    values = [tuple(row) for row in rows]
    found = parent._init_from_db(**dict(zip(parent_columns, values[0][:width], strict=True)))
    children = [
        child._init_from_db(**dict(zip(columns, row[width:], strict=True)))
        for row in values
        if row[width] is not None  # the child's id: None when the parent has no children
    ]
    return found, children


async def select_columns(
    conn: BaseDBAsyncClient,
    model: type[Model],
    columns: tuple[str, ...],
    where: str,
    values: Sequence[Any],
    order_by: str | None = None,
) -> list[tuple[Any, ...]]:
    """Some columns of ``model``'s rows, as plain tuples (no model objects)."""
    chosen = ",".join(f'"{c}"' for c in columns)
    template = _select_template(table_of(model).name, chosen, where, order_by)
    _, rows = await conn.execute_query(render(conn, template), list(values))
    return [tuple(row) for row in rows]


async def select_by_ids(
    conn: BaseDBAsyncClient, model: type[M], ids: Sequence[int], leave_out: tuple[str, ...] = ()
) -> list[M]:
    """The rows of ``model`` with these ids (any order), without ``leave_out`` columns."""
    columns = child_columns(model, leave_out)
    found: list[M] = []
    for start in range(0, len(ids), INSERT_CHUNK):
        chunk = list(ids[start : start + INSERT_CHUNK])
        template = _by_ids_template(table_of(model).name, columns, len(chunk))
        _, rows = await conn.execute_query(render(conn, template), chunk)
        found += [
            model._init_from_db(**dict(zip(columns, tuple(row), strict=True))) for row in rows
        ]
    return found


@functools.lru_cache(maxsize=64)
def _by_ids_template(table: str, columns: tuple[str, ...], count: int) -> str:
    chosen = ",".join(f'"{c}"' for c in columns)
    return f'SELECT {chosen} FROM "{table}" WHERE "id" IN ({_marks(count)})'  # noqa: S608


def child_columns(child: type[Model], leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``child``'s columns, ``id`` first, without ``leave_out``."""
    return tuple(c for c in ("id", *table_of(child).columns) if c not in leave_out)


@functools.cache
def _join_template(
    parent_model: type[Model],
    child_model: type[Model],
    foreign_key: str,
    order_by: str,
    columns: tuple[str, ...],
) -> str:
    parent = table_of(parent_model)
    child = table_of(child_model)
    chosen = [f'p."{c}" AS "p.{c}"' for c in ("id", *parent.columns)]
    chosen += [f'c."{c}" AS "c.{c}"' for c in columns]
    return (
        f'SELECT {",".join(chosen)} FROM "{parent.name}" p '  # noqa: S608  (our names)
        f'LEFT JOIN "{child.name}" c ON c."{foreign_key}" = p."id" '
        f'WHERE p."id"=? ORDER BY c."{order_by}"'
    )
