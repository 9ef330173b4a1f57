"""Claims for runs that start themselves: schedule fires and webhook deliveries.

Each is a row with a unique key inserted before the run starts: the process
whose insert wins starts the run; an ``IntegrityError`` means another process
(or an earlier delivery) already has it, and nothing is started twice.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import ScheduleFire, WebhookDelivery


async def claim_fire(pipeline: str, key: str, fire_at: datetime, outcome: str = "claimed") -> bool:
    """Insert the fire's row; False when it exists already (someone else has it)."""
    try:
        async with in_transaction() as conn:
            await ScheduleFire.create(
                pipeline=pipeline, schedule_key=key, fire_at=fire_at, outcome=outcome, using_db=conn
            )
    except IntegrityError:
        return False
    return True


async def claim_fire_with_run(
    pipeline: str, key: str, fire_at: datetime, run_id: int, conn: BaseDBAsyncClient
) -> None:
    """Insert the fire's row in the transaction that creates its run.

    Both commit or neither does: a crash in between leaves no claim and no run
    (the fire is then a missed one), and of two replicas the second's insert
    fails on the unique key and rolls its run back.
    """
    await ScheduleFire.create(
        pipeline=pipeline,
        schedule_key=key,
        fire_at=fire_at,
        outcome="started",
        run_id=run_id,
        using_db=conn,
    )


async def record_fire(
    pipeline: str,
    key: str,
    fire_at: datetime,
    outcome: str,
    run_id: int | None = None,
    detail: str | None = None,
) -> None:
    await ScheduleFire.filter(pipeline=pipeline, schedule_key=key, fire_at=fire_at).update(
        outcome=outcome, run_id=run_id, detail=detail
    )


async def last_fire(pipeline: str, key: str) -> datetime | None:
    """The latest recorded fire (or first sighting) of a schedule."""
    row = (
        await ScheduleFire.filter(pipeline=pipeline, schedule_key=key).order_by("-fire_at").first()
    )
    return row.fire_at if row is not None else None


async def fires_of(pipeline: str) -> list[ScheduleFire]:
    return list(await ScheduleFire.filter(pipeline=pipeline).order_by("fire_at", "id"))


async def claim_delivery(pipeline: str, delivery_id: str) -> bool:
    """Insert the delivery's row; False when this delivery id was seen before."""
    try:
        async with in_transaction() as conn:
            await WebhookDelivery.create(
                pipeline=pipeline, delivery_id=delivery_id, run_id=None, using_db=conn
            )
    except IntegrityError:
        return False
    return True


async def reclaim_stale_delivery(pipeline: str, delivery_id: str, before: datetime) -> bool:
    """Take over a delivery claimed before ``before`` that never got its run (a crash)."""
    count = await WebhookDelivery.filter(
        pipeline=pipeline, delivery_id=delivery_id, run_id__isnull=True, created_at__lt=before
    ).delete()
    return bool(count) and await claim_delivery(pipeline, delivery_id)


async def delivery_run(pipeline: str, delivery_id: str) -> tuple[bool, int | None]:
    """(seen, run id) of a delivery; the run id is None while its run is being created."""
    row = await WebhookDelivery.filter(pipeline=pipeline, delivery_id=delivery_id).first()
    if row is None:
        return False, None
    return True, row.run_id


async def set_delivery_run(pipeline: str, delivery_id: str, run_id: int) -> None:
    await WebhookDelivery.filter(pipeline=pipeline, delivery_id=delivery_id).update(run_id=run_id)


async def drop_delivery(pipeline: str, delivery_id: str) -> None:
    """Forget a delivery whose run was refused, so the same refusal answers a redelivery."""
    await WebhookDelivery.filter(
        pipeline=pipeline, delivery_id=delivery_id, run_id__isnull=True
    ).delete()
