"""Pipeline file keys for runs that start themselves or must not overlap.

``schedule:`` (cron with a timezone, or a fixed interval), ``triggers.webhook``
and ``concurrency:``. Checking is pure; fire times are computed in
``engine/schedules.py`` from these specs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVERY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_EVERY_SECONDS = 1.0
MAX_EVERY_SECONDS = 366 * 86400
# ``$.ref``, ``$.head_commit.id``, ``$.commits[0].id``
JSON_PATH = re.compile(r"^\$(\.[A-Za-z0-9_-]+|\[[0-9]+\])+$")
PATH_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def every_seconds(text: str) -> float:
    """``30s``, ``5m``, ``2h``, ``1d`` as seconds; ValueError in plain words otherwise."""
    match = EVERY.match(text)
    if match is None:
        raise ValueError(
            f"every {text!r} is not an interval: write a number and a unit, e.g. 30s, 5m, 2h"
        )
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds < MIN_EVERY_SECONDS:
        raise ValueError(f"every {text!r} is too short: the shortest interval is 1s")
    if seconds > MAX_EVERY_SECONDS:
        raise ValueError(f"every {text!r} is too long: the longest interval is 366d")
    return seconds


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as UTC or Europe/Berlin"
        ) from None


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday_numbers(part: str) -> list[int] | None:
    """One comma part of a numeric cron weekday field (0 or 7 = Sunday), or None."""
    body, _, step_text = part.partition("/")
    step = int(step_text) if step_text.isdigit() else 1
    if step_text and not step_text.isdigit():
        return None
    if body == "*":
        low, high = 0, 6
    else:
        bounds = body.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            return None
        low, high = int(bounds[0]), int(bounds[-1])
        if not step_text and len(bounds) == 1:
            high = low
        elif step_text and len(bounds) == 1:
            high = 7
    if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high and step >= 1):
        raise ValueError(f"weekday {part!r} is out of range: use 0-7 (0 and 7 are Sunday)")
    return list(range(low, high + 1, step))


def crontab_weekdays(field: str) -> str:
    """The weekday field as APScheduler reads it.

    Cron counts weekdays from Sunday = 0 (7 is Sunday too); APScheduler 3
    counts from Monday = 0. Numbers become day names; names and ``*`` stay.
    """
    if field == "*":
        return field
    names: list[str] = []
    for part in field.split(","):
        numbers = _weekday_numbers(part)
        if numbers is None:
            names.append(part)
            continue
        names.extend(_WEEKDAYS[n % 7] for n in numbers)
    return ",".join(dict.fromkeys(names))


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    # Imported here: a file without ``schedule: cron`` (and ``ansflow run``) never needs it.
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = cron.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_weekdays(weekday),
        timezone=zone(timezone),
    )


class ScheduleSpec(_Strict):
    cron: str | None = Field(None, description="5-field cron: minute hour day month weekday")
    every: str | None = Field(None, description="a fixed interval: 30s, 5m, 2h")
    timezone: str = Field("UTC", description="IANA timezone of the cron fields")
    parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("every", mode="before")
    @classmethod
    def _number_is_seconds(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value}s"
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _values_to_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: ("true" if v else "false")
                if isinstance(v, bool)
                else (str(v) if isinstance(v, int | float) else v)
                for k, v in value.items()
            }
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("every")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            every_seconds(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule has exactly one of cron or every")
        if self.cron is not None:
            fields = self.cron.split()
            if len(fields) != 5:
                raise ValueError(
                    f"cron {self.cron!r} has {len(fields)} fields; "
                    "write 5: minute hour day-of-month month day-of-week"
                )
            try:
                trigger = cron_trigger(self.cron, self.timezone)
            except ValueError as exc:
                raise ValueError(f"cron {self.cron!r} is not valid: {exc}") from None
            if _never_fires(self.cron):
                raise ValueError(f"cron {self.cron!r} never fires: no listed month has that day")
            if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
                raise ValueError(f"cron {self.cron!r} never fires")
        return self


# Days each month can have (February: 29).
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30}


def _never_fires(cron: str) -> bool:
    """A plain day-of-month list that no listed month has (``0 0 30 2 *``).

    APScheduler keeps searching years ahead for such a cron; refusing it up
    front gives a clear error. Only plain numbers and ranges are checked.
    """
    _, _, days, months, weekdays = cron.split()
    if weekdays != "*":
        return False  # cron fires when either the day or the weekday matches

    def numbers(field: str, top: int) -> set[int] | None:
        found: set[int] = set()
        for part in field.split(","):
            if part == "*":
                return set(range(1, top + 1))
            bounds = part.split("-")
            if not all(b.isdigit() for b in bounds) or len(bounds) > 2:
                return None
            low, high = int(bounds[0]), int(bounds[-1])
            found.update(range(low, high + 1))
        return found

    day_set = numbers(days, 31)
    month_set = numbers(months, 12)
    if not day_set or not month_set:
        return False
    return all(min(day_set) > _MONTH_DAYS.get(m, 31) for m in month_set)


class WebhookSpec(_Strict):
    secret_env: str = Field(
        min_length=1, pattern=ENV_NAME, description="env var holding the HMAC-SHA256 key"
    )
    parameters: dict[str, str] = Field(
        default_factory=dict, description="parameter name: JSON path in the body ($.ref)"
    )

    @field_validator("parameters")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not JSON_PATH.match(path):
                raise ValueError(
                    f"parameter {name!r}: {path!r} is not a body path; "
                    "write $.field, $.a.b or $.list[0].field"
                )
        return value


class TriggersSpec(_Strict):
    webhook: WebhookSpec | None = None


class ConcurrencySpec(_Strict):
    group: str = Field(min_length=1, max_length=120)
    mode: Literal["queue", "cancel_previous"] = "queue"


def group_names(group: str) -> list[str]:
    return PLACEHOLDER.findall(group)


def group_of(spec: ConcurrencySpec, parameters: dict[str, str]) -> str:
    """The group's name with each ``${param}`` replaced by the run's value."""
    return PLACEHOLDER.sub(lambda m: parameters.get(m.group(1), ""), spec.group)


def body_value(body: Any, path: str) -> Any:
    """The value at ``path`` ($.a.b, $.list[0]) in a parsed JSON body; KeyError when absent."""
    value = body
    for key, index in PATH_PART.findall(path.removeprefix("$")):
        if key:
            if not isinstance(value, dict) or key not in value:
                raise KeyError(path)
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                raise KeyError(path)
            value = value[int(index)]
    return value


def check_references(field: str, value: Any, declared: set[str]) -> None:
    """The parameter names a trigger key refers to must be declared (ValueError otherwise)."""
    # A ``${name}`` in the concurrency group is checked on the raw file with the
    # Jenkins parameters (``engine.pipelines.references``): one message for both.
    valid = ", ".join(sorted(declared)) or "none"
    if isinstance(value, TriggersSpec) and value.webhook is not None:
        unknown = sorted(set(value.webhook.parameters) - declared)
        if unknown:
            raise ValueError(
                f"webhook sets {', '.join(unknown)}, which is not a declared parameter "
                f"(declared: {valid})"
            )
    elif field == "schedule" and isinstance(value, list):
        for index, schedule in enumerate(value):
            unknown = sorted(set(schedule.parameters) - declared)
            if unknown:
                raise ValueError(
                    f"schedule {index + 1} sets {', '.join(unknown)}, "
                    f"which is not a declared parameter (declared: {valid})"
                )
