"""Cancelling Jenkins steps, and Jenkins going down while a build runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.permissions import Actor
from engine.runner import CancelResult
from engine.state import RunStatus, StepStatus
from storage.models import CICDTool
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import RunningServer, eventually, serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    finished,
    jenkins_settings,
    jenkins_step,
    new_fake,
    service,
    start_run,
    step_reaches,
    triggers,
    write_jenkins_pipeline,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        yield fake


async def cancel(server: RunningServer, run_id: int) -> None:
    assert await server.core.engine.cancel_run(run_id, Actor("U1")) == CancelResult.REQUESTED


async def test_cancel_while_queued_removes_the_queue_item(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold_queue("deploy-web")
    async with serving(jenkins_settings(database_url, pipelines_dir, fake)) as server:
        run_id = await start_run(server)
        await step_reaches(run_id, "queued")
        await cancel(server, run_id)
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.CANCELLED
    assert step.status == StepStatus.CANCELLED
    assert step.reason == "cancelled; Jenkins queue item 1 was removed"
    assert fake.state.queue[1].cancelled
    assert fake.job("deploy-web").builds == {}


async def test_cancel_while_building_stops_the_build_and_waits_for_aborted(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold("deploy-web")
    async with serving(jenkins_settings(database_url, pipelines_dir, fake)) as server:
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
        await cancel(server, run_id)
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.CANCELLED
    assert step.status == StepStatus.CANCELLED
    assert step.reason == "cancelled; Jenkins build #1 was aborted"
    assert fake.build("deploy-web", 1).result == "ABORTED"
    assert fake.count("/job/deploy-web/1/stop", "POST") == 1


async def test_cancel_while_triggering_cancels_what_was_queued(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold_queue("deploy-web")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        fake.slow(0.3)
        run_id = await start_run(server)
        await step_reaches(run_id, "triggering")
        await cancel(server, run_id)
        fake.slow(0)
        run = await finished(server, run_id)
    assert run.status == RunStatus.CANCELLED
    assert triggers(fake) <= 1
    assert all(item.cancelled for item in fake.state.queue.values())
    assert fake.job("deploy-web").builds == {}


async def test_unconfirmed_cancel_ends_the_step_after_a_bound_with_a_note(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold("deploy-web")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        service(server).poller.cancel_confirm_within = 0.5
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
        await fake.go_down()
        await cancel(server, run_id)
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.CANCELLED
    assert step.reason == (
        "cancelled; Jenkins did not confirm that build #1 of 'deploy-web' was aborted within 0.5 s"
    )


async def test_jenkins_down_mid_build_is_waited_out_and_followed_to_the_end(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold("deploy-web")
    fake.script("deploy-web", "FAILURE", console="tests failed\n")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        poller = service(server).poller
        tool = await CICDTool.get(name="jenkins")
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
        await fake.go_down()
        await eventually(lambda: _failures(server, tool.id), lambda n: n >= 4, timeout=30)
        fake.release("deploy-web")
        await fake.come_up()
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
        assert poller.failures(tool.id) == 0
    assert run.status == RunStatus.FAILED
    assert step.reason == "Jenkins build #1 finished FAILURE"
    assert "tests failed" in step.log_tail
    assert triggers(fake) == 1


async def _failures(server: RunningServer, tool_id: int) -> int:
    return service(server).poller.failures(tool_id)


async def test_step_timeout_stops_the_build_and_fails_the_step(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, step_extra="timeout: 1\n    ")
    fake.hold("deploy-web")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
        step = await jenkins_step(run.id)
    assert run.status == RunStatus.FAILED
    assert step.reason == "timed out after 1s"
    assert fake.build("deploy-web", 1).abort_requested
