"""Concurrency groups: who holds one, claimed and freed by compare-and-set only.

A group is a row ``(name, holder_run_id)``. Claiming is
``UPDATE … SET holder = :run WHERE name = :g AND holder IS NULL``; freeing is
``UPDATE … SET holder = NULL WHERE name = :g AND holder = :run``. Whoever's
update counts one row won; nothing about a group is decided in memory, so any
number of processes may race for it.
"""

from __future__ import annotations

from collections.abc import Collection

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import ConcurrencyGroup, Run


async def ensure_group(name: str) -> None:
    if await ConcurrencyGroup.filter(name=name).exists():
        return
    try:
        async with in_transaction() as conn:
            await ConcurrencyGroup.create(name=name, holder_run_id=None, using_db=conn)
    except IntegrityError:
        pass  # another process created it first


async def holder_of(name: str) -> int | None:
    rows = await ConcurrencyGroup.filter(name=name).values_list("holder_run_id", flat=True)
    return int(rows[0]) if rows and rows[0] is not None else None  # type: ignore[call-overload]


async def claim(name: str, run_id: int) -> bool:
    count = await ConcurrencyGroup.filter(name=name, holder_run_id__isnull=True).update(
        holder_run_id=run_id
    )
    return bool(count)


async def free(name: str, run_id: int) -> bool:
    count = await ConcurrencyGroup.filter(name=name, holder_run_id=run_id).update(
        holder_run_id=None
    )
    return bool(count)


async def oldest_queued(name: str, queued: str) -> int | None:
    rows = (
        await Run.filter(concurrency_group=name, status=queued)
        .order_by("id")
        .limit(1)
        .values_list("id", flat=True)
    )
    return int(rows[0]) if rows else None  # type: ignore[call-overload]


async def run_status(run_id: int) -> str | None:
    rows = await Run.filter(id=run_id).values_list("status", flat=True)
    return str(rows[0]) if rows else None


async def older_active(name: str, run_id: int, active: Collection[str]) -> list[int]:
    """Active runs of the group created before ``run_id``, oldest first."""
    rows = (
        await Run.filter(concurrency_group=name, status__in=list(active), id__lt=run_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return [int(r) for r in rows]  # type: ignore[call-overload]


async def groups_with(status: str) -> list[str]:
    rows = (
        await Run.filter(status=status, concurrency_group__isnull=False)
        .distinct()
        .values_list("concurrency_group", flat=True)
    )
    return sorted({str(r) for r in rows})


async def mark_queued_behind(run_id: int, ahead: int, queued: str, conn: BaseDBAsyncClient) -> bool:
    """Record whom a still-queued run waits behind; False once it left ``queued``."""
    count = await Run.filter(id=run_id, status=queued).using_db(conn).update(queued_behind=ahead)
    return bool(count)
