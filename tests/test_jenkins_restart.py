"""A service stopped at each phase of a Jenkins step, then started again on the same database.

The first server is stopped without finishing its work (its tasks are
cancelled, as a crash would leave them); the second must neither lose the
build nor trigger it a second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from engine.state import RunStatus
from storage.db import close_db, open_db
from storage.models import StepRun
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import eventually, serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    finished,
    jenkins_settings,
    jenkins_step,
    new_fake,
    start_run,
    step_reaches,
    triggers,
    write_jenkins_pipeline,
)

MARKED_PARAMS = [*DEPLOY_PARAMS, ("ANSFLOW_RUN_STEP", "string", "")]


@asynccontextmanager
async def database(url: str) -> AsyncIterator[None]:
    """The database, opened between two servers."""
    await open_db(url, apply_migrations=False)
    try:
        yield
    finally:
        await close_db()


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("marked", params=MARKED_PARAMS)
        yield fake


async def test_stopped_before_the_trigger_was_sent_triggers_once_after_restart(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake)
    async with serving(settings) as server:
        await fake.go_down()
        run_id = await start_run(server)
        step = await step_reaches(run_id, "triggering")
    assert step.external_state is not None and step.external_state["bound"] is None
    await fake.come_up()
    async with serving(settings) as server:
        run = await finished(server, run_id)
    assert run.status == RunStatus.SUCCESS
    assert triggers(fake) == 1


async def test_stopped_between_reading_the_job_and_the_post_looks_then_triggers_once(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake)
    async with serving(settings) as server:
        await fake.go_down()
        run_id = await start_run(server)
        step = await step_reaches(run_id, "triggering")
    # The crash point: the job was read and its lower bound stored, the POST never left.
    state = dict(step.external_state or {})
    state.update(bound=1, since=1.0, match={"VERSION": "1.0", "ENV": "staging"})
    async with database(sqlite_url):
        await StepRun.filter(id=step.id).update(external_state=state)
    await fake.come_up()
    async with serving(settings) as server:
        run = await finished(server, run_id)
    assert run.status == RunStatus.SUCCESS
    assert triggers(fake) == 1
    assert fake.count("/queue/api/json", "GET") >= 1  # it looked before triggering


@pytest.mark.parametrize("job", ["marked", "deploy-web"], ids=["marker", "parameters"])
async def test_stopped_after_the_post_reached_jenkins_follows_that_build(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins, job: str
) -> None:
    write_jenkins_pipeline(pipelines_dir, job=job)
    settings = jenkins_settings(database_url, pipelines_dir, fake)
    async with serving(settings) as server:
        fake.slow(0.5)  # the answer to the POST arrives after the crash
        run_id = await start_run(server)
        await eventually(lambda: _triggers(fake, job), lambda n: n == 1)
    async with database(database_url):
        step = await jenkins_step(run_id)
    assert (step.external_state or {}).get("phase") == "triggering"
    assert step.external_id is None
    await eventually(lambda: _queued(fake), lambda n: n == 1)  # Jenkins did queue it
    fake.slow(0)
    async with serving(settings) as server:
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.SUCCESS
    assert triggers(fake, job) == 1
    assert step.external_url == f"{fake.url}job/{job}/1/"
    # A job that declares the marker parameter gets this attempt's marker; others do not.
    marker = f"{run_id}-{step.id}-1" if job == "marked" else None
    assert fake.build(job, 1).params.get("ANSFLOW_RUN_STEP") == marker


async def test_stopped_while_queued_follows_the_queue_item_after_restart(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(database_url, pipelines_dir, fake)
    fake.hold_queue("deploy-web")
    async with serving(settings) as server:
        run_id = await start_run(server)
        await step_reaches(run_id, "queued")
    fake.release_queue("deploy-web")
    async with serving(settings) as server:
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.SUCCESS
    assert step.external_url == f"{fake.url}job/deploy-web/1/"
    assert triggers(fake) == 1


async def test_stopped_while_building_follows_the_build_after_restart(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake)
    fake.hold("deploy-web")
    async with serving(settings) as server:
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
    async with serving(settings) as server:
        await step_reaches(run_id, "building")
        fake.release("deploy-web", "UNSTABLE")
        run = await finished(server, run_id)
    assert run.status == RunStatus.FAILED
    assert run.reason == "Jenkins build #1 finished UNSTABLE"
    assert triggers(fake) == 1


async def test_build_that_finished_while_the_service_was_down_is_picked_up(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake)
    fake.hold("deploy-web")
    async with serving(settings) as server:
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
    fake.release("deploy-web", "SUCCESS")
    async with serving(settings) as server:
        run = await finished(server, run_id)
    assert run.status == RunStatus.SUCCESS
    assert triggers(fake) == 1


async def _triggers(fake: FakeJenkins, job: str) -> int:
    return triggers(fake, job)


async def _queued(fake: FakeJenkins) -> int:
    return len(fake.state.queue)
