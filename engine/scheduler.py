"""Starting scheduled runs: one APScheduler job per schedule, one run per fire.

Every process runs the same jobs (fire times are the same everywhere, see
``engine/schedules.py``); each fire is claimed with a unique row before its
run starts (``storage/triggers.py``), so one run starts per fire however many
processes run. A process that starts (or sees a new schedule) looks at the
schedule's last recorded fire: a fire missed meanwhile runs once if it is at
most ``grace`` seconds late, and is skipped with a log line otherwise.
:meth:`Schedules.sync` follows the pipeline files: an edited schedule is a new
schedule (its key changes), a removed one loses its job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from tortoise.exceptions import IntegrityError

from engine.errors import UserError
from engine.permissions import Actor
from engine.pipelines.triggers import ScheduleSpec
from engine.runner import Engine, RunRequest
from engine.schedules import missed, next_fire, schedule_key
from storage import triggers as claims

log = logging.getLogger(__name__)

SCHEDULE_ACTOR = Actor(user_id="schedule", trusted=True)
JOB_PREFIX = "schedule:"
# A fire this late on a live replica means it was stalled: it is skipped.
MIN_STALL_SECONDS = 60.0


@dataclass(frozen=True)
class Armed:
    pipeline: str
    key: str
    spec: ScheduleSpec
    channel: str | None


def now() -> datetime:
    return datetime.now(UTC)


def describe(spec: ScheduleSpec) -> str:
    if spec.cron is not None:
        return f"cron {spec.cron!r} ({spec.timezone})"
    return f"every {spec.every}"


class Schedules:
    def __init__(self, engine: Engine, scheduler: AsyncIOScheduler, grace: float) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.grace = grace
        self._armed: dict[str, Armed] = {}
        self.stopped = False

    def wanted(self) -> dict[str, Armed]:
        """Every schedule of the loaded pipeline files, by job id."""
        found: dict[str, Armed] = {}
        for name, pipeline in self.engine.source.catalog().pipelines.items():
            for spec in pipeline.schedule or []:
                key = schedule_key(spec)
                found[f"{JOB_PREFIX}{name}:{key}"] = Armed(name, key, spec, pipeline.channel)
        return found

    async def sync(self) -> None:
        """Arm new schedules (running a fire they missed) and drop those that are gone."""
        if self.stopped:
            return
        wanted = self.wanted()
        for job_id in sorted(set(self._armed) - set(wanted)):
            gone = self._armed.pop(job_id)
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            log.info("schedule %s of %s removed", describe(gone.spec), gone.pipeline)
        for job_id in sorted(set(wanted) - set(self._armed)):
            armed = wanted[job_id]
            self._armed[job_id] = armed
            try:
                await self._catch_up(armed)
            except Exception:
                log.exception("schedule %s of %s: catching up failed", armed.key, armed.pipeline)
            fire_at = self._arm(job_id, armed, now())
            log.info(
                "pipeline %s: schedule %s armed, next run at %s",
                armed.pipeline,
                describe(armed.spec),
                fire_at.isoformat() if fire_at else "never",
            )

    async def _catch_up(self, armed: Armed) -> None:
        moment = now()
        last = await claims.last_fire(armed.pipeline, armed.key)
        if last is None:
            # First sighting: remember it, so a fire missed from now on is known.
            await claims.claim_fire(armed.pipeline, armed.key, moment, outcome="armed")
            return
        due = missed(armed.spec, last, moment, self.grace)
        if due.skipped is not None and await claims.claim_fire(
            armed.pipeline, armed.key, due.skipped, outcome="skipped"
        ):
            late = (moment - due.skipped).total_seconds()
            log.warning(
                "pipeline %s: scheduled run at %s (%s) skipped: missed while no replica ran, "
                "%.0f s late, more than ANSFLOW_SCHEDULE_GRACE (%.0f s)",
                armed.pipeline,
                due.skipped.isoformat(),
                describe(armed.spec),
                late,
                self.grace,
            )
        if due.run is not None:
            log.info(
                "pipeline %s: running the fire at %s missed while no replica ran",
                armed.pipeline,
                due.run.isoformat(),
            )
            await self.fire_once(armed, due.run)

    def _arm(self, job_id: str, armed: Armed, after: datetime) -> datetime | None:
        fire_at = next_fire(armed.spec, after)
        if fire_at is None or self.stopped:
            return None
        self.scheduler.add_job(
            self._on_fire,
            trigger=DateTrigger(run_date=fire_at, timezone=UTC),
            args=[job_id, fire_at],
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=4,
        )
        return fire_at

    async def _on_fire(self, job_id: str, fire_at: datetime) -> None:
        armed = self._armed.get(job_id)
        if armed is None or self.stopped:
            return
        # The next fire is armed first: a slow start never delays it.
        moment = now()
        stalled = moment - fire_at > timedelta(seconds=max(self.grace, MIN_STALL_SECONDS))
        # A process that stalled (a suspended VM) does not replay every fire it slept through.
        self._arm(job_id, armed, moment if stalled else fire_at)
        if stalled:
            log.warning(
                "pipeline %s: scheduled run at %s skipped: this replica was stalled until %s",
                armed.pipeline,
                fire_at.isoformat(),
                moment.isoformat(),
            )
            return
        try:
            await self.fire_once(armed, fire_at)
        except Exception:
            log.exception("pipeline %s: scheduled run at %s failed", armed.pipeline, fire_at)

    async def fire_once(self, armed: Armed, fire_at: datetime) -> int | None:
        """Start the fire's run, claimed in the run's own transaction; None when another
        process has it (exactly one run per fire, whatever crashes in between)."""

        async def claim(run_id: int, conn: Any) -> None:
            await claims.claim_fire_with_run(armed.pipeline, armed.key, fire_at, run_id, conn)

        request = RunRequest(
            pipeline=armed.pipeline,
            parameters=dict(armed.spec.parameters),
            actor=SCHEDULE_ACTOR,
            trigger_type="schedule",
            source="schedule",
            on_created=claim,
        )
        try:
            run = await self.engine.start_run(request)
        except IntegrityError:
            return None  # another replica's run for this fire committed first
        except UserError as exc:
            if await claims.claim_fire(armed.pipeline, armed.key, fire_at, outcome="refused"):
                log.warning("pipeline %s: scheduled run refused: %s", armed.pipeline, exc)
                await claims.record_fire(
                    armed.pipeline, armed.key, fire_at, "refused", None, str(exc)
                )
            return None
        return run.id

    def stop(self) -> None:
        self.stopped = True
        for job_id in list(self._armed):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
        self._armed.clear()
