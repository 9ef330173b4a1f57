"""Many builds in flight: polling costs the same whatever their number; identical triggers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.state import RunStatus, StepStatus
from storage.models import CICDTool, StepRun
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import RunningServer, eventually, serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    finished,
    jenkins_settings,
    new_fake,
    service,
    start_run,
    step_reaches,
    triggers,
    write_jenkins_pipeline,
)

MARKED_PARAMS = [*DEPLOY_PARAMS, ("ANSFLOW_RUN_STEP", "string", "")]
IN_FLIGHT = 100


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("marked", params=MARKED_PARAMS)
        yield fake


async def building_steps() -> int:
    steps = await StepRun.filter(kind="jenkins", status=StepStatus.RUNNING.value)
    return sum(1 for s in steps if (s.external_state or {}).get("phase") == "building")


async def polls(server: RunningServer, tool_id: int) -> int:
    return service(server).poller.polls.get(tool_id, 0)


async def test_hundred_builds_in_flight_cost_a_bounded_number_of_requests_per_poll(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, job="marked")
    fake.hold("marked")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        tool = await CICDTool.get(name="jenkins")
        run_ids = [await start_run(server) for _ in range(IN_FLIGHT)]
        await eventually(building_steps, lambda n: n == IN_FLIGHT, timeout=60)
        first_poll = await polls(server, tool.id)
        before = len(fake.requests)
        later = await eventually(lambda: polls(server, tool.id), lambda n: n >= first_poll + 10)
        # Counted after the polls: every request of those polls (and of no others) is in.
        asked = len(fake.requests) - before
        assert asked <= 3 * (later - first_poll + 1)
        fake.release("marked", "SUCCESS")
        runs = [await finished(server, run_id, timeout=60) for run_id in run_ids]
    assert all(run.status == RunStatus.SUCCESS for run in runs)
    assert triggers(fake, "marked") == IN_FLIGHT
    assert {b.params["ANSFLOW_RUN_STEP"] for b in fake.job("marked").builds.values()} == {
        f"{r}-{r}-1" for r in run_ids
    }


async def test_identical_parameters_already_queued_are_not_taken_for_ours(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold_queue("deploy-web")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        first = await start_run(server)
        await step_reaches(first, "queued")
        second = await finished(server, await start_run(server))
    assert second.status == RunStatus.FAILED
    assert second.reason is not None
    assert second.reason.startswith(
        "An identical build of Jenkins job 'deploy-web' is already waiting in the queue (item 1)."
    )
    assert "ANSFLOW_RUN_STEP" in second.reason
    assert len(fake.state.queue) == 1


async def test_identical_parameters_are_told_apart_by_the_marker(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, job="marked")
    fake.hold_queue("marked")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        first = await start_run(server)
        second = await start_run(server)
        await step_reaches(first, "queued")
        await step_reaches(second, "queued")
        fake.release_queue("marked")
        runs = [await finished(server, first), await finished(server, second)]
    assert [run.status for run in runs] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
    assert len(fake.job("marked").builds) == 2
