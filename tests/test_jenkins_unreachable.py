"""Jenkins that cannot be reached: the step's reason says so, it retries, then times out.

The real server and engine, real python-jenkins, the fake Jenkins stopped and started.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.state import RunStatus, StepStatus
from storage.models import StepRun
from tests.api_support import make_token
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, serving
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
from tests.slack_signing import CHANNEL, slack_server

NOTE = "Jenkins jenkins unreachable: connection refused; retrying"
JWT = "jwt-secret-for-the-unreachable-tests-0123"


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        yield fake


# A step's timeout that leaves room for the note on a loaded machine (the note comes
# after the first refused attempt; the step must still be running when it is seen).
STEP_TIMEOUT = 8


async def reason_becomes(
    run_id: int, wanted: str | None, timeout: float = 15.0
) -> tuple[StepStatus, str | None]:
    async def status_and_reason() -> tuple[StepStatus, str | None]:
        step = await jenkins_step(run_id)
        return step.status, step.reason

    return await eventually(
        status_and_reason,
        lambda seen: seen == (StepStatus.RUNNING, wanted),
        timeout=timeout,
    )


async def test_unreachable_while_triggering_says_so_then_fails_at_the_timeout(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, step_extra=f"timeout: {STEP_TIMEOUT}\n    ")
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake, ANSFLOW_JWT_SECRET=JWT)
    async with serving(settings) as server:
        await fake.go_down()
        service(server).executor.retry_base = 0.1
        service(server).executor.retry_cap = 0.5
        began = time.monotonic()
        run_id = await start_run(server)
        await reason_becomes(run_id, NOTE)
        # The REST execution shows it too.
        headers = {"Authorization": f"Bearer {make_token('U1', secret=JWT)}"}
        url = f"{server.url}/api/v1/cicd/executions/{run_id}/"
        body = await _get_json(url, headers)
        assert body["status"] == "running"
        assert body["steps"][0]["reason"] == NOTE
        run = await finished(server, run_id)
        took = time.monotonic() - began
    assert run.status == RunStatus.FAILED
    assert (
        run.reason
        == f"timed out after {STEP_TIMEOUT}s (Jenkins jenkins unreachable: connection refused)"
    )
    assert STEP_TIMEOUT - 0.5 <= took < STEP_TIMEOUT + 15


async def _get_json(url: str, headers: dict[str, str]) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as reply:
        assert reply.status == 200
        return await reply.json()


async def test_jenkins_back_before_the_timeout_clears_the_reason_and_triggers_once(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        await fake.go_down()
        service(server).executor.retry_base = 0.1
        service(server).executor.retry_cap = 0.3
        run_id = await start_run(server)
        await reason_becomes(run_id, NOTE)
        await fake.come_up()
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.SUCCESS
    assert step.reason is None
    assert triggers(fake) == 1


async def test_unreachable_while_following_says_so_and_clears_when_back(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.hold("deploy-web")
    write_jenkins_pipeline(pipelines_dir)
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        service(server).poller.backoff_cap = 0.5
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
        await fake.go_down()
        await reason_becomes(run_id, NOTE)
        await fake.come_up()
        await reason_becomes(run_id, None)
        fake.release("deploy-web", "SUCCESS")
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.SUCCESS
    assert step.reason is None


async def test_unreachable_while_following_fails_at_the_steps_timeout(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.hold("deploy-web")
    write_jenkins_pipeline(pipelines_dir, step_extra=f"timeout: {STEP_TIMEOUT}\n    ")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        service(server).poller.backoff_cap = 0.5
        run_id = await start_run(server)
        await step_reaches(run_id, "building")
        await fake.go_down()
        await reason_becomes(run_id, NOTE)
        run = await finished(server, run_id)
    assert run.status == RunStatus.FAILED
    assert (
        run.reason
        == f"timed out after {STEP_TIMEOUT}s (Jenkins jenkins unreachable: connection refused)"
    )


async def test_the_slack_card_shows_the_reason_while_jenkins_is_unreachable(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, step_extra="timeout: 60\n    ")
    env = {
        "JENKINS_URL": fake.url,
        "JENKINS_USER": "ansflow-bot",
        "JENKINS_API_TOKEN": "jt0ken-5ecret-never-shown",
        "ANSFLOW_POLL_INTERVAL": "0.1",
    }
    async with (
        FakeSlack() as slack_fake,
        slack_server(sqlite_url, pipelines_dir, slack_fake, **env) as slack,
    ):
        await fake.go_down()
        service(slack.server).executor.retry_base = 0.1
        service(slack.server).executor.retry_cap = 0.3
        await slack.command("run deploy")
        step = await eventually(
            lambda: StepRun.filter(kind="jenkins").first(),
            lambda s: s is not None and s.reason == NOTE,
        )
        assert step is not None

        async def card() -> str:
            root = slack.root_of(step.run_id, CHANNEL)
            return str(root.blocks) if root is not None else ""

        shown = await eventually(card, lambda text: "unreachable" in text, timeout=20)
        await fake.come_up()
        cleared = await eventually(card, lambda text: "unreachable" not in text, timeout=20)
        await slack.server.core.engine.wait_finished(step.run_id, timeout=30)
    assert "Reason: Jenkins jenkins unreachable: connection refused; retrying" in shown
    assert "Deploy" in cleared
