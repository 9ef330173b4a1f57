"""Fire times of schedules (pure): cron in timezones and across DST, intervals, missed fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.pipelines.triggers import ScheduleSpec
from engine.schedules import latest_at_or_before, missed, next_fire, schedule_key


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(spec: ScheduleSpec, after: datetime, count: int) -> list[str]:
    found: list[str] = []
    moment = after
    for _ in range(count):
        fire = next_fire(spec, moment)
        assert fire is not None
        found.append(fire.strftime("%Y-%m-%d %H:%M"))
        moment = fire
    return found


CRON_TABLE = [
    # (cron, timezone, start (UTC), the next fires (UTC))
    ("0 3 * * 1-5", "UTC", "2026-12-04 12:00", ["2026-12-07 03:00", "2026-12-08 03:00"]),
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
    ("0 3 * * *", "Europe/Berlin", "2026-01-10 00:00", ["2026-01-10 02:00", "2026-01-11 02:00"]),
    ("0 3 * * *", "Europe/Berlin", "2026-07-10 00:00", ["2026-07-10 01:00", "2026-07-11 01:00"]),
    (
        "30 9 * * *",
        "America/New_York",
        "2026-03-07 00:00",
        ["2026-03-07 14:30", "2026-03-08 13:30", "2026-03-09 13:30"],
    ),
    ("0 0 1 * *", "Asia/Tokyo", "2026-01-15 00:00", ["2026-01-31 15:00", "2026-02-28 15:00"]),
    ("*/15 * * * *", "Asia/Kolkata", "2026-05-01 10:01", ["2026-05-01 10:15", "2026-05-01 10:30"]),
    # Spring forward in Berlin (29 March 2026, 02:00 -> 03:00): 02:30 does not exist that
    # night; the fire comes at the first valid time after it (03:30 local).
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28 00:00",
        ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"],
    ),
    # Fall back (25 October 2026, 03:00 -> 02:00): 02:30 happens twice; a job at a fixed
    # hour runs once, at the first of the two.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24 00:00",
        ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"],
    ),
    # ...while a job on every hour keeps its pace in real time through the repeated hour.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24 23:30",
        ["2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"],
    ),
]


@pytest.mark.parametrize(("cron", "tz", "start", "expected"), CRON_TABLE)
def test_cron_next_fires(cron: str, tz: str, start: str, expected: list[str]) -> None:
    spec = ScheduleSpec(cron=cron, timezone=tz)
    assert fires(spec, utc(start), len(expected)) == expected


@pytest.mark.parametrize(
    ("every", "start", "expected"),
    [
        # Intervals count from the Unix epoch: every process computes the same fires.
        ("30s", "2026-01-01 00:00:10", ["2026-01-01 00:00:30", "2026-01-01 00:01:00"]),
        ("5m", "2026-01-01 00:03:00", ["2026-01-01 00:05:00", "2026-01-01 00:10:00"]),
        ("2h", "2026-01-01 01:00:00", ["2026-01-01 02:00:00", "2026-01-01 04:00:00"]),
        ("1s", "2026-01-01 00:00:00.5", ["2026-01-01 00:00:01", "2026-01-01 00:00:02"]),
    ],
)
def test_every_fires_on_multiples_of_the_interval(
    every: str, start: str, expected: list[str]
) -> None:
    spec = ScheduleSpec(every=every)
    moment = utc(start)
    got = []
    for _ in expected:
        fire = next_fire(spec, moment)
        assert fire is not None
        got.append(fire.strftime("%Y-%m-%d %H:%M:%S"))
        moment = fire
    assert got == expected


def test_a_fire_exactly_now_is_the_next_only_when_inclusive() -> None:
    spec = ScheduleSpec(every="30s")
    moment = utc("2026-01-01 00:00:30")
    assert next_fire(spec, moment) == utc("2026-01-01 00:01:00")
    assert next_fire(spec, moment, inclusive=True) == moment


def test_missed_fires_within_the_grace_run_once_the_rest_are_skipped() -> None:
    spec = ScheduleSpec(every="1m")
    last = utc("2026-01-01 00:00:00")
    now = utc("2026-01-01 00:10:30")
    due = missed(spec, last, now, grace=300)
    assert due.run == utc("2026-01-01 00:10:00")  # the latest, once
    assert due.skipped == utc("2026-01-01 00:05:00")  # the latest past the grace
    late = missed(spec, last, now, grace=10)
    assert late.run is None and late.skipped == utc("2026-01-01 00:10:00")
    assert missed(spec, utc("2026-01-01 00:10:00"), now, grace=300).run is None


def test_missed_cron_fire_after_a_night_down() -> None:
    spec = ScheduleSpec(cron="0 3 * * *", timezone="Europe/Berlin")
    last = utc("2026-01-09 02:00")
    assert missed(spec, last, utc("2026-01-10 02:04"), grace=300).run == utc("2026-01-10 02:00")
    skipped = missed(spec, last, utc("2026-01-10 02:06"), grace=300)
    assert skipped.run is None and skipped.skipped == utc("2026-01-10 02:00")
    assert latest_at_or_before(spec, utc("2026-01-10 01:59"), last) is None


def test_schedule_keys_change_with_timing_or_parameters_only() -> None:
    base = schedule_key(ScheduleSpec(every="5m", parameters={"env": "staging"}))
    assert base == schedule_key(ScheduleSpec(every="5m", parameters={"env": "staging"}))
    assert base != schedule_key(ScheduleSpec(every="5m", parameters={"env": "production"}))
    assert base != schedule_key(ScheduleSpec(every="6m", parameters={"env": "staging"}))
    assert len(base) <= 64


def test_next_fire_is_never_the_moment_itself_for_cron() -> None:
    spec = ScheduleSpec(cron="* * * * *")
    moment = utc("2026-01-01 00:00")
    assert next_fire(spec, moment) == moment + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("cron", "start", "expected_weekdays"),
    [
        # Cron counts from Sunday = 0; 2026-12-06 is a Sunday.
        ("0 3 * * 1-5", "2026-12-05 12:00", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 3 * * 0", "2026-12-01 00:00", ["Sun", "Sun"]),
        ("0 3 * * 7", "2026-12-01 00:00", ["Sun", "Sun"]),
        ("0 3 * * 6,0", "2026-12-01 00:00", ["Sat", "Sun", "Sat"]),
        ("0 3 * * */2", "2026-12-06 00:00", ["Sun", "Tue", "Thu", "Sat", "Sun"]),
        ("0 3 * * mon-fri", "2026-12-05 12:00", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
    ],
)
def test_cron_weekdays_count_from_sunday(
    cron: str, start: str, expected_weekdays: list[str]
) -> None:
    spec = ScheduleSpec(cron=cron)
    moment = utc(start)
    days = []
    for _ in expected_weekdays:
        fire = next_fire(spec, moment)
        assert fire is not None
        days.append(fire.strftime("%a"))
        moment = fire
    assert days == expected_weekdays
