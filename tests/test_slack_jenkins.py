"""Slack and Jenkins together: `/ansflow list` shows the jobs pipelines use, `logs` reads Jenkins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ansflow.jenkins_setup import JENKINS
from engine.state import RunStatus
from storage.models import Run
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually
from tests.jenkins_e2e import DEPLOY_PARAMS, TOKEN, USER, new_fake, write_jenkins_pipeline
from tests.slack_signing import ALICE, SlackHarness, slack_server


@pytest.fixture
async def jenkins() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        yield fake


@pytest.fixture
async def slack_fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def jenkins_env(fake: FakeJenkins) -> dict[str, str]:
    return {
        "JENKINS_URL": fake.url,
        "JENKINS_USER": USER,
        "JENKINS_API_TOKEN": TOKEN,
        "ANSFLOW_POLL_INTERVAL": "0.1",
    }


async def ephemeral(slack: SlackHarness, needle: str) -> str:
    async def find() -> str | None:
        for e in slack.fake.ephemerals:
            text = e.text + str(e.blocks)
            if e.user == ALICE and needle in text:
                return text
        return None

    found = await eventually(find, timeout=20)
    assert found is not None
    return found


async def test_list_names_the_jenkins_jobs_and_flags_one_that_is_gone(
    sqlite_url: str, pipelines_dir: Path, slack_fake: FakeSlack, jenkins: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    write_jenkins_pipeline(pipelines_dir, name="legacy", job="old-deploy")
    env = jenkins_env(jenkins)
    async with slack_server(sqlite_url, pipelines_dir, slack_fake, **env) as slack:
        await slack.server.app[JENKINS].sync_all()
        await slack.command("list")
        text = await ephemeral(slack, "legacy")
    assert "Jenkins: `deploy-web`" in text
    assert "Jenkins: `old-deploy`" in text
    assert "Jenkins job 'old-deploy' no longer exists" in text
    assert "'deploy-web' no longer exists" not in text


async def test_logs_of_a_jenkins_step_reads_the_console_from_jenkins(
    sqlite_url: str, pipelines_dir: Path, slack_fake: FakeSlack, jenkins: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    jenkins.script(
        "deploy-web", "SUCCESS", duration=0.1, console="pushing image\nrollout complete\n"
    )
    env = jenkins_env(jenkins)
    async with slack_server(sqlite_url, pipelines_dir, slack_fake, **env) as slack:
        await slack.command("run deploy")

        async def done() -> Run | None:
            run = await Run.first()
            return run if run is not None and run.status == RunStatus.SUCCESS else None

        run = await eventually(done, timeout=30)
        assert run is not None
        await slack.command(f"logs {run.id} Deploy")
        text = await ephemeral(slack, "rollout complete")
    assert "pushing image" in text
    assert TOKEN not in text
