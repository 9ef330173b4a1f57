"""Schedules and concurrency groups on real ``ansflow serve`` processes.

Two replicas on the throwaway PostgreSQL: every fire starts one run, however
many replicas fire it; runs of one concurrency group created alternately on
both replicas run one at a time in creation order. A replica killed with
SIGKILL: a fire missed meanwhile runs once at the next start if it is within
``ANSFLOW_SCHEDULE_GRACE``, and is skipped with a log line otherwise.

The delays printed (``-s``) are the figures the issue asks for; speed targets
live in ``bench/``.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.models import Run, ScheduleFire
from tests.api_support import ADMIN, SECRET, bearer
from tests.helpers import Json, eventually, write_pipeline
from tests.test_crash_restart import Served, Servers, database, logs, servers

pytestmark = pytest.mark.postgres

TICK = """\
name: tick
parameters:
  env: {default: staging}
schedule:
  - every: EVERY
    parameters: {env: nightly}
steps:
  - name: t
    run: echo "tick $env"
"""
QUEUED = """\
name: deploy
parameters:
  env: {default: production}
concurrency:
  group: "deploy-${env}"
steps:
  - name: work
    run: sleep 1
"""


def env_for(url: str, pipelines_dir: Path, **more: str) -> dict[str, str]:
    return {
        "ANSFLOW_DATABASE_URL": url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        "ANSFLOW_JWT_SECRET": SECRET,
        "ANSFLOW_ADMINS": ADMIN,
        **more,
    }


def now() -> datetime:
    return datetime.now(UTC)


async def clock_passes(moment: datetime) -> None:
    """Let wall-clock time reach ``moment`` (fires are due at times, not on outcomes)."""
    remaining = (moment - now()).total_seconds()
    if remaining > 0:
        await asyncio.sleep(remaining)


async def started_fires(pipeline: str) -> list[ScheduleFire]:
    return list(await ScheduleFire.filter(pipeline=pipeline, outcome="started").order_by("fire_at"))


def report(title: str, seconds: list[float]) -> None:
    if seconds:
        print(
            f"\n{title}: n={len(seconds)} median={statistics.median(seconds) * 1000:.0f} ms "
            f"max={max(seconds) * 1000:.0f} ms"
        )


async def check_one_run_per_fire(pipeline: str) -> list[float]:
    """Every started fire has its own run, of trigger_type schedule; returns the delays."""
    await eventually(
        lambda: ScheduleFire.filter(pipeline=pipeline, outcome="claimed").count(),
        lambda n: n == 0,
        timeout=10,
    )
    fires = await started_fires(pipeline)
    runs = {r.id: r for r in await Run.filter(pipeline=pipeline)}
    assert len({f.fire_at for f in fires}) == len(fires)
    assert sorted(f.run_id for f in fires if f.run_id) == sorted(runs)
    delays = []
    for fire in fires:
        run = runs[fire.run_id or 0]
        assert (run.trigger_type, run.triggered_by, run.source) == (
            "schedule",
            "schedule",
            "schedule",
        )
        assert run.parameters == {"env": "nightly"}
        delays.append((run.created_at - fire.fire_at).total_seconds())
    return delays


async def test_two_replicas_start_exactly_one_run_per_fire(
    tmp_path: Path, pipelines_dir: Path, pg_url: str
) -> None:
    write_pipeline(pipelines_dir, "tick", TICK.replace("EVERY", "1s"))
    async with servers(tmp_path, env_for(pg_url, pipelines_dir)) as group, database(pg_url):
        first = await group.start()
        await group.start()
        both_up = now()
        async with group.http.get(f"{first.url}/api/v1/pipelines/", headers=bearer(ADMIN)) as reply:
            listed = (await reply.json())["results"][0]
        next_fire = datetime.fromisoformat(listed["next_fire_at"].replace("Z", "+00:00"))
        assert now() - timedelta(seconds=1) < next_fire <= now() + timedelta(seconds=1)

        def after_both(fires: list[ScheduleFire]) -> int:
            return sum(1 for f in fires if f.fire_at > both_up)

        await eventually(lambda: started_fires("tick"), lambda f: after_both(f) >= 8, timeout=30)
        # The schedule removed from the file: both replicas stop firing it, no restart.
        write_pipeline(
            pipelines_dir,
            "tick",
            TICK.replace("  - every: EVERY\n    parameters: {env: nightly}\n", "  []\n"),
        )
        edited = now()
        await clock_passes(edited + timedelta(seconds=4))
        settled = len(await started_fires("tick"))
        await clock_passes(now() + timedelta(seconds=3))
        assert len(await started_fires("tick")) == settled, logs(*group.started)

        delays = await check_one_run_per_fire("tick")
        fires = await started_fires("tick")
        # No fire was lost between the first and the last: one each second.
        seconds = [int(f.fire_at.timestamp()) for f in fires]
        assert seconds == list(range(seconds[0], seconds[-1] + 1)), seconds
        report("schedule fire -> run created (two replicas)", delays)


async def test_kill_9_a_missed_fire_runs_once_within_the_grace_and_is_skipped_past_it(
    tmp_path: Path, pipelines_dir: Path, pg_url: str
) -> None:
    write_pipeline(pipelines_dir, "tick", TICK.replace("EVERY", "2s"))
    env = env_for(pg_url, pipelines_dir)
    async with servers(tmp_path, env) as group, database(pg_url):
        first = await group.start()
        await eventually(lambda: started_fires("tick"), lambda f: len(f) >= 1, timeout=30)
        await group.kill9(first)
        killed = now()
        # Two fires pass while no replica runs; the next one starts with no grace at all.
        await clock_passes(killed + timedelta(seconds=4.5))
        group.env["ANSFLOW_SCHEDULE_GRACE"] = "0"
        strict = await group.start()

        async def skipped() -> list[ScheduleFire]:
            return list(await ScheduleFire.filter(pipeline="tick", outcome="skipped"))

        missed = await eventually(skipped, lambda rows: len(rows) == 1, timeout=10)
        assert killed < missed[0].fire_at < now()
        await eventually(
            lambda: asyncio.sleep(0, strict.log.read_text()),
            lambda text: "skipped: missed while no replica ran" in text,
            timeout=10,
        )
        assert not await ScheduleFire.filter(
            pipeline="tick", outcome="started", fire_at__gt=killed, fire_at__lt=missed[0].fire_at
        ).exists()

        await group.kill9(strict)
        killed_again = now()
        last_seen = max(f.fire_at for f in await started_fires("tick") + missed)
        await clock_passes(killed_again + timedelta(seconds=4.5))
        group.env["ANSFLOW_SCHEDULE_GRACE"] = "300"
        third = await group.start()
        # Of the fires missed while down, the latest runs once; the older ones do not run.
        text = await eventually(
            lambda: asyncio.sleep(0, third.log.read_text()),
            lambda t: "running the fire at " in t,
            timeout=10,
        )
        assert text.count("running the fire at ") == 1
        named = text.split("running the fire at ", 1)[1].split(" missed", 1)[0]
        caught = datetime.fromisoformat(named)
        assert killed_again < caught < now()
        await eventually(
            lambda: started_fires("tick"), lambda f: any(x.fire_at == caught for x in f), timeout=10
        )
        window = [x.fire_at for x in await started_fires("tick") if last_seen < x.fire_at <= caught]
        assert window == [caught], window
        await check_one_run_per_fire("tick")


async def create_run(group: Servers, served: Served, env: str = "production") -> Json:
    async with group.http.post(
        f"{served.url}/api/v1/cicd/executions/",
        json={"pipeline": "deploy", "parameters": {"env": env}},
        headers=bearer(ADMIN),
    ) as reply:
        body: Json = await reply.json()
        assert reply.status == 201, body
        return body


async def runs_of(ids: list[int]) -> list[Run]:
    return list(await Run.filter(id__in=ids).order_by("id"))


async def test_a_group_runs_one_at_a_time_in_order_across_replicas(
    tmp_path: Path, pipelines_dir: Path, pg_url: str
) -> None:
    write_pipeline(pipelines_dir, "deploy", QUEUED)
    async with servers(tmp_path, env_for(pg_url, pipelines_dir)) as group, database(pg_url):
        replicas = [await group.start(), await group.start()]
        created = [await create_run(group, replicas[i % 2]) for i in range(6)]
        ids = [int(c["id"]) for c in created]
        # The second run, created on the other replica while the first one runs, waits.
        assert created[0]["status"] == "running"
        assert created[1]["status"] == "queued", created[1]
        assert created[1]["queued_behind"] == ids[0]
        assert created[1]["concurrency_group"] == "deploy-production"
        other_group = await create_run(group, replicas[1], env="staging")
        assert other_group["status"] == "running"
        # A queued run cancelled on the other replica: the queue closes up behind it.
        async with group.http.post(
            f"{replicas[0].url}/api/v1/cicd/executions/{ids[4]}/cancel/", headers=bearer(ADMIN)
        ) as reply:
            assert reply.status in (200, 202), await reply.text()

        def done(runs: list[Run]) -> bool:
            return all(r.status in ("success", "failed", "cancelled") for r in runs)

        try:
            runs = await eventually(lambda: runs_of(ids), done, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs(*group.started)}") from None
        ran = [r for r in runs if r.id != ids[4]]
        assert [r.status for r in ran] == ["success"] * 5
        assert runs[4].status == "cancelled" and runs[4].started_at == runs[4].finished_at
        handoffs = []
        for before, after in itertools.pairwise(ran):
            assert before.finished_at is not None and after.started_at is not None
            assert after.started_at >= before.finished_at, (before.id, after.id)
            handoffs.append((after.started_at - before.finished_at).total_seconds())
        report("group freed -> next queued run running (two replicas)", handoffs)
