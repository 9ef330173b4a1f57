"""Replica leases and named leases, on the database's clock.

A replica is alive while ``replica.lease_until`` is in the future by the
database's clock (``clock_timestamp()`` on PostgreSQL; SQLite serves one
process, whose own clock is the database's). A named lease (``lease`` table)
is taken by inserting it, or by a compare-and-set on a row whose holder is
this replica or whose expiry has passed, so two replicas never both hold it.

A change violates this module when it compares a lease with a host's clock on
PostgreSQL, or takes a lease without a guard on its current holder and expiry.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Lease, Replica, Run, StepRun


def _is_postgres() -> bool:
    dialect: str = connections.get("default").capabilities.dialect
    return dialect == "postgres"


async def db_now() -> datetime:
    """The database's current time (aware, UTC)."""
    if not _is_postgres():
        return datetime.now(UTC)
    rows = await connections.get("default").execute_query_dict("SELECT clock_timestamp() AS t")
    stamp: datetime = rows[0]["t"]
    return stamp.astimezone(UTC)


async def register_replica(
    replica_id: str,
    host: str,
    pid: int,
    port: int | None,
    seconds: float,
    *,
    exclusive: bool = False,
) -> None:
    """Add this replica with a fresh lease; an earlier incarnation on host:port is dead.

    ``exclusive`` (SQLite, one process): every other replica row is dead.
    """
    current = await db_now()
    if exclusive:
        await Replica.exclude(id=replica_id).update(lease_until=current - timedelta(seconds=1))
    elif port is not None:
        # Only one process can listen on host:port: whoever had it before is gone.
        await (
            Replica.filter(host=host, port=port)
            .exclude(id=replica_id)
            .update(lease_until=current - timedelta(seconds=1))
        )
    await Replica.create(
        id=replica_id,
        host=host,
        pid=pid,
        port=port,
        started_at=current,
        lease_until=current + timedelta(seconds=seconds),
    )


async def renew_replica(replica_id: str, seconds: float, *, draining: bool = False) -> bool:
    """Extend this replica's lease; False when its row is gone (declared dead)."""
    until = await db_now() + timedelta(seconds=seconds)
    count = await Replica.filter(id=replica_id).update(lease_until=until, draining=draining)
    return bool(count)


async def retire_replica(replica_id: str) -> None:
    """This replica stops: its lease ends now and its named leases are free."""
    past = await db_now() - timedelta(seconds=1)
    await Replica.filter(id=replica_id).update(lease_until=past)
    await Lease.filter(owner=replica_id).update(expires_at=past)


async def live_replica_ids() -> set[str]:
    current = await db_now()
    rows = await Replica.filter(lease_until__gt=current).values_list("id", flat=True)
    return {str(r) for r in rows}


async def forget_dead_replicas(older_than: timedelta) -> int:
    """Drop rows of replicas dead for long (and owning nothing active)."""
    cutoff = await db_now() - older_than
    return await Replica.filter(lease_until__lt=cutoff).delete()


# ---- named leases --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """The outcome of taking a lease: ``won``, and the rate state it carried."""

    won: bool
    tokens: float | None = None  # as stored by the last holder, brought up to now
    fresh: bool = False  # nobody ever held it


async def take_lease(name: str, owner: str, seconds: float) -> bool:
    """Hold ``name`` for ``seconds`` more if it is free, expired, or already ours."""
    return (await claim_lease(name, owner, seconds)).won


async def claim_lease(
    name: str, owner: str, seconds: float, *, refill_per_second: float = 0.0
) -> Claim:
    """Take or renew ``name``; the stored tokens come back refilled to the database's now."""
    current = await db_now()
    until = current + timedelta(seconds=seconds)
    won = await Lease.filter(name=name, owner=owner, expires_at__gt=current).update(
        expires_at=until
    )
    if not won:
        won = await Lease.filter(name=name, expires_at__lte=current).update(
            owner=owner, expires_at=until
        )
        if not won and not await Lease.filter(name=name).exists():
            try:
                async with in_transaction() as conn:
                    await Lease.create(name=name, owner=owner, expires_at=until, using_db=conn)
            except IntegrityError:
                return Claim(False)
            return Claim(True, fresh=True)
    if not won:
        return Claim(False)
    row = await Lease.filter(name=name, owner=owner).first()
    if row is None or row.tokens is None or row.tokens_at is None:
        return Claim(True, fresh=True)
    elapsed = max(0.0, (current - row.tokens_at).total_seconds())
    return Claim(True, tokens=row.tokens + elapsed * refill_per_second)


async def spend_lease_token(name: str, owner: str, seconds: float, tokens_left: float) -> bool:
    """Store the rate state and renew, before the work it allows; False if we lost it."""
    current = await db_now()
    count = await Lease.filter(name=name, owner=owner, expires_at__gt=current).update(
        expires_at=current + timedelta(seconds=seconds), tokens=tokens_left, tokens_at=current
    )
    return bool(count)


async def release_lease(name: str, owner: str) -> None:
    """Let another replica take ``name`` now (its rate state stays with the row)."""
    past = await db_now() - timedelta(microseconds=1)
    await Lease.filter(name=name, owner=owner).update(expires_at=past)


# ---- owned work ----------------------------------------------------------------------


async def orphaned_steps(
    alive: Collection[str], active: Collection[str]
) -> list[tuple[int, int, str | None]]:
    """``(step id, run id, owner)`` of active steps whose owner is not alive."""
    rows = await (
        StepRun.filter(status__in=list(active)).order_by("id").values_list("id", "run_id", "owner")
    )
    return [
        (int(i), int(r), None if o is None else str(o))
        for i, r, o in rows
        if o is None or o not in alive
    ]


async def orphaned_runs(alive: Collection[str], active: Collection[str]) -> list[int]:
    """Active runs whose driving replica is not alive (or was never recorded)."""
    rows = await Run.filter(status__in=list(active)).order_by("id").values_list("id", "owner")
    return [int(i) for i, o in rows if o is None or o not in alive]


async def adopt_step(step_id: int, old_owner: str | None, new_owner: str) -> bool:
    """Compare-and-set on the owner: True for the one replica that takes the step."""
    query = StepRun.filter(id=step_id)
    query = query.filter(owner__isnull=True) if old_owner is None else query.filter(owner=old_owner)
    return bool(await query.update(owner=new_owner))


async def adopt_run(run_id: int, alive: Collection[str], new_owner: str) -> bool:
    """Take a run whose owner is dead or unknown; True for the one replica that wins."""
    current = await Run.filter(id=run_id).values_list("owner", flat=True)
    if not current:
        return False
    old = None if current[0] is None else str(current[0])
    if old is not None and old in alive:
        return False
    query = Run.filter(id=run_id)
    query = query.filter(owner__isnull=True) if old is None else query.filter(owner=old)
    return bool(await query.update(owner=new_owner))


async def runs_cancelling_with_steps_of(owner: str, active_steps: Collection[str]) -> list[int]:
    """Runs asked to cancel whose active steps ``owner`` runs (a missed signal)."""
    run_ids = await (
        StepRun.filter(owner=owner, status__in=list(active_steps))
        .distinct()
        .values_list("run_id", flat=True)
    )
    if not run_ids:
        return []
    rows = await Run.filter(
        id__in=[int(r) for r in run_ids],  # type: ignore[call-overload]
        cancel_requested_at__isnull=False,
    ).values_list("id", flat=True)
    return sorted(int(r) for r in rows)  # type: ignore[call-overload]


async def idle_runs_of(
    owner: str, active_runs: Collection[str], active_steps: Collection[str]
) -> list[int]:
    """Active runs of ``owner`` with no step at work: nothing moves them but a drive."""
    run_ids = {
        int(r)  # type: ignore[call-overload]
        for r in await Run.filter(owner=owner, status__in=list(active_runs)).values_list(
            "id", flat=True
        )
    }
    if not run_ids:
        return []
    busy = {
        int(r)  # type: ignore[call-overload]
        for r in await StepRun.filter(run_id__in=list(run_ids), status__in=list(active_steps))
        .distinct()
        .values_list("run_id", flat=True)
    }
    return sorted(run_ids - busy)
