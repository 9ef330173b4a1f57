"""Jenkins steps across real replicas: kill -9 of the one following a build, restarts meanwhile.

Whatever the phase of its Jenkins step when the replica that drives it dies
(triggering, queued, building), a survivor follows the build Jenkins has to
its end, and no step ever gets a second build.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fakes.slack import FakeSlack
from tests.jenkins_e2e import DEPLOY_PARAMS, TOKEN, USER, triggers, write_jenkins_pipeline
from tests.replicas import LEASE_SECONDS, Replicas, replica_set
from tests.test_crash_restart import MARKED_PARAMS, LateAnswers, build_count

pytestmark = pytest.mark.postgres

TAKE_OVER_LIMIT = 3 * LEASE_SECONDS + 10


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def jenkins() -> AsyncIterator[LateAnswers]:
    fake = LateAnswers(user=USER, token=TOKEN)
    await fake.start()
    try:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("marked", params=MARKED_PARAMS)
        yield fake
    finally:
        await fake.stop()


def pipeline_with_after(pipelines_dir: Path, marker: Path, job: str) -> None:
    after = f"  - name: After\n    run: \"echo $ANSFLOW_RUN_ID >> '{marker}'\"\n"
    write_jenkins_pipeline(pipelines_dir, job=job, extra_steps=after)


async def phase_reached(group: Replicas, run_id: int, phase: str) -> None:
    async def probe() -> tuple[str, str | None]:
        step = await group.db.step(run_id, "Deploy")
        state = step["external_state"]
        return str(step["status"]), (_json(state) or {}).get("phase")

    await group.until(probe, lambda s: s == ("running", phase), what=f"phase {phase}")


def _json(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    loaded = json.loads(value) if isinstance(value, str) else value
    return loaded if isinstance(loaded, dict) else None


async def count_reaches(
    group: Replicas, count: Callable[[], int], at_least: int, what: str
) -> None:
    async def probe() -> int:
        return count()

    await group.until(probe, lambda n: n >= at_least, what=what)


async def one_build_and_success(
    group: Replicas, fake: LateAnswers, run_id: int, job: str, marker: Path, at: int
) -> None:
    run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT + 20)
    assert run["status"] == "success", (run["status"], run["reason"])
    body = await group.execution(at, run_id)
    deploy, after = body["steps"]
    assert deploy["status"] == "success"
    assert deploy["external_url"] == f"{fake.url}job/{job}/1/"
    assert after["status"] == "success"
    assert triggers(fake, job) == 1
    assert build_count(fake, job) == 1
    assert marker.read_text().splitlines() == [str(run_id)]


@pytest.mark.parametrize("phase", ["triggering", "queued", "building"])
async def test_kill_9_of_the_replica_following_a_build_a_survivor_follows_it_once(
    tmp_path: Path,
    pg_url: str,
    pipelines_dir: Path,
    slack: FakeSlack,
    jenkins: LateAnswers,
    phase: str,
) -> None:
    job = "marked" if phase == "triggering" else "deploy-web"
    marker = tmp_path / "after.marker"
    pipeline_with_after(pipelines_dir, marker, job)
    if phase == "queued":
        jenkins.hold_queue(job)
    if phase == "building":
        jenkins.hold(job)
    if phase == "triggering":
        jenkins.answer_delay = 60.0  # the POST takes effect; its answer never comes back
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, jenkins=jenkins) as group:
        run_id = await group.create_run(0, "deploy")
        if phase == "triggering":
            await count_reaches(group, lambda: triggers(jenkins, job), 1, "the POST")
        else:
            await phase_reached(group, run_id, phase)
        await group.kill9(0)
        if phase == "triggering":
            jenkins.answer_delay = 0.0
        if phase == "queued":
            looks = jenkins.count("/queue/api/json", "GET")
            # A survivor asks Jenkins about the waiting item before it leaves the queue.
            await count_reaches(
                group, lambda: jenkins.count("/queue/api/json", "GET"), looks + 1, "a queue poll"
            )
            jenkins.release_queue(job)
        if phase == "building":
            await phase_reached(group, run_id, "building")
            jenkins.release(job, "SUCCESS")
        await one_build_and_success(group, jenkins, run_id, job, marker, at=1)


async def test_restarting_a_replica_while_the_other_triggers_gives_each_step_one_build(
    tmp_path: Path,
    pg_url: str,
    pipelines_dir: Path,
    slack: FakeSlack,
    jenkins: LateAnswers,
) -> None:
    job = "marked"
    marker = tmp_path / "after.marker"
    pipeline_with_after(pipelines_dir, marker, job)
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, jenkins=jenkins) as group:
        jenkins.script(job, duration=4.0)
        jenkins.slow(6.0)  # replica 0's first requests of each trigger take a while
        runs = [await group.create_run(0, "deploy") for _ in range(6)]
        for run_id in runs:
            await phase_reached(group, run_id, "triggering")
        await group.kill9(1)
        await group.launch(1)  # starts while replica 0 is in the middle of its triggers
        jenkins.slow(0.0)
        await group.healthy(1)
        for run_id in runs:
            run = await group.finished(run_id, timeout=40)
            assert run["status"] == "success", (run["status"], run["reason"])
        assert triggers(jenkins, job) == 6
        assert build_count(jenkins, job) == 6
        markers = Counter(
            jenkins.build(job, n).params["ANSFLOW_RUN_STEP"].split("-")[0] for n in range(1, 7)
        )
        assert markers == Counter(str(r) for r in runs)
        assert sorted(marker.read_text().splitlines()) == sorted(str(r) for r in runs)


def gets(fake: LateAnswers) -> int:
    """GET requests of the service's Jenkins client (the dashboard '/' aside)."""
    return sum(1 for r in list(fake.requests) if r.method == "GET" and r.path != "/")


async def seconds_for_polls(group: Replicas, fake: LateAnswers, count: int) -> float:
    start = gets(fake)
    began = asyncio.get_running_loop().time()
    await count_reaches(group, lambda: gets(fake), start + count, f"{count} more Jenkins GETs")
    return asyncio.get_running_loop().time() - began


async def test_two_replicas_poll_jenkins_as_often_as_one(
    tmp_path: Path,
    pg_url: str,
    pipelines_dir: Path,
    slack: FakeSlack,
    jenkins: LateAnswers,
) -> None:
    marker = tmp_path / "after.marker"
    pipeline_with_after(pipelines_dir, marker, "deploy-web")
    jenkins.hold("deploy-web")
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, jenkins=jenkins) as group:
        run_id = await group.create_run(0, "deploy")
        await phase_reached(group, run_id, "building")
        await seconds_for_polls(group, jenkins, 5)  # settled into its rhythm
        with_two = await seconds_for_polls(group, jenkins, 12)
        await group.kill9(0)
        await seconds_for_polls(group, jenkins, 5)  # whoever polls now is the survivor
        with_one = await seconds_for_polls(group, jenkins, 12)
        # One poller for the tool: a second replica does not double the requests.
        assert with_two >= 0.7 * with_one, (with_two, with_one)
        jenkins.release("deploy-web", "SUCCESS")
        await one_build_and_success(group, jenkins, run_id, "deploy-web", marker, at=1)
