"""Fire times of pipeline schedules (pure: APScheduler's triggers compute them).

A cron schedule fires in its timezone (DST as APScheduler's CronTrigger
handles it); an ``every`` schedule fires on multiples of its interval counted
from the Unix epoch, so every replica computes the same fire times whenever
it started.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from engine.pipelines import Pipeline
from engine.pipelines.triggers import ScheduleSpec, cron_trigger, every_seconds, zone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_STEPS = 10_000


@dataclass(frozen=True)
class Due:
    """What a schedule missed while nobody ran it."""

    # The latest fire time missed within the grace: run it once (None: nothing to run).
    run: datetime | None
    # The latest fire time missed past the grace (None: nothing skipped).
    skipped: datetime | None


def schedule_key(spec: ScheduleSpec) -> str:
    """A stable name for a schedule: editing its timing or parameters makes a new one."""
    text = json.dumps(
        [spec.cron, spec.every, spec.timezone, sorted(spec.parameters.items())],
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def trigger_of(spec: ScheduleSpec) -> BaseTrigger:
    if spec.cron is not None:
        return cron_trigger(spec.cron, spec.timezone)
    assert spec.every is not None
    return IntervalTrigger(seconds=every_seconds(spec.every), start_date=EPOCH, timezone=UTC)


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def next_fire(spec: ScheduleSpec, after: datetime, *, inclusive: bool = False) -> datetime | None:
    """The first fire time later than ``after`` (or equal to it with ``inclusive``)."""
    trigger = trigger_of(spec)
    if inclusive:
        return _utc(trigger.get_next_fire_time(None, after))
    if spec.every is not None:
        step = timedelta(seconds=every_seconds(spec.every))
        count = (after - EPOCH) // step + 1
        return EPOCH + step * count
    # 5-field cron fires on whole minutes: the next one strictly later is found
    # from the start of the following minute (this also steps past a wall-clock
    # time that a DST change makes occur twice).
    start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    fire = _utc(trigger.get_next_fire_time(None, start))
    if fire is not None and _repeated_wall_time(spec, after, fire):
        # Clocks went back: a job at a fixed hour runs once, at the first of the two.
        return next_fire(spec, fire)
    return fire


def _repeated_wall_time(spec: ScheduleSpec, before: datetime, fire: datetime) -> bool:
    assert spec.cron is not None
    if "*" in spec.cron.split()[1]:
        return False
    tz = zone(spec.timezone)
    first, second = before.astimezone(tz), fire.astimezone(tz)
    return first.replace(tzinfo=None) == second.replace(tzinfo=None)


def latest_at_or_before(spec: ScheduleSpec, moment: datetime, since: datetime) -> datetime | None:
    """The latest fire time in ``(since, moment]``, or None when there is none."""
    if spec.every is not None:
        step = timedelta(seconds=every_seconds(spec.every))
        latest = EPOCH + step * ((moment - EPOCH) // step)
        return latest if latest > since else None
    found: datetime | None = None
    cursor = since
    for _ in range(MAX_STEPS):
        fire = next_fire(spec, cursor)
        if fire is None or fire > moment:
            return found
        found = cursor = fire
    return found


def missed(spec: ScheduleSpec, last: datetime, now: datetime, grace: float) -> Due:
    """Fires after ``last`` and up to ``now``: the latest runs if at most ``grace`` late."""
    latest = latest_at_or_before(spec, now, last)
    if latest is None:
        return Due(None, None)
    cutoff = now - timedelta(seconds=grace)
    if latest >= cutoff:
        older = latest_at_or_before(spec, cutoff - timedelta(microseconds=1), last)
        return Due(latest, older)
    return Due(None, latest)


def next_fire_at(pipeline: Pipeline, now: datetime) -> datetime | None:
    """When any of the pipeline's schedules fires next (None without schedules)."""
    times = [next_fire(spec, now) for spec in pipeline.schedule or []]
    present = [t for t in times if t is not None]
    return min(present) if present else None
