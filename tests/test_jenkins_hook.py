"""``POST /hooks/jenkins/{secret}``: the Notification plugin's push moves steps at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.jenkins.hook import Notification, parse_notification
from engine.state import RunStatus
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    finished,
    jenkins_settings,
    new_fake,
    start_run,
    step_reaches,
    write_jenkins_pipeline,
)

SECRET = "h00k-secret-in-the-path"


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        yield fake


def notification(fake: FakeJenkins, phase: str, number: int, queue_id: int) -> dict[str, Any]:
    build: dict[str, Any] = {
        "full_url": f"{fake.url}job/deploy-web/{number}/",
        "number": number,
        "queue_id": queue_id,
        "phase": phase,
        "url": f"job/deploy-web/{number}/",
        "parameters": {"VERSION": "1.0", "ENV": "staging"},
    }
    if phase in ("COMPLETED", "FINALIZED"):
        build["status"] = "SUCCESS"
    return {"name": "deploy-web", "url": "job/deploy-web/", "build": build}


async def post(url: str, body: Any) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status


async def test_notifications_move_the_step_without_waiting_for_a_poll(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.hold("deploy-web")
    settings = jenkins_settings(
        sqlite_url,
        pipelines_dir,
        fake,
        ANSFLOW_POLL_INTERVAL="3600",
        ANSFLOW_JENKINS_HOOK_SECRET=SECRET,
    )
    async with serving(settings) as server:
        hook = f"{server.url}/hooks/jenkins/{SECRET}"
        run_id = await start_run(server)
        await step_reaches(run_id, "queued")
        assert fake.build("deploy-web", 1).building  # Jenkins started it; nobody polls
        assert await post(hook, notification(fake, "STARTED", 1, 1)) == 200
        step = await step_reaches(run_id, "building", timeout=5)
        assert step.external_url == f"{fake.url}job/deploy-web/1/"
        fake.release("deploy-web", "SUCCESS")
        assert await post(hook, notification(fake, "COMPLETED", 1, 1)) == 200
        run = await finished(server, run_id, timeout=10)
        assert await post(hook, notification(fake, "FINALIZED", 1, 1)) == 202
    assert run.status == RunStatus.SUCCESS


async def test_wrong_or_unset_secret_is_not_found_and_unknown_builds_are_ignored(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake, ANSFLOW_JENKINS_HOOK_SECRET=SECRET)
    async with serving(settings) as server:
        base = f"{server.url}/hooks/jenkins"
        assert await post(f"{base}/wrong", notification(fake, "STARTED", 1, 1)) == 404
        assert await post(f"{base}/{SECRET}", notification(fake, "STARTED", 7, 9)) == 202
        assert await post(f"{base}/{SECRET}", {"not": "a notification"}) == 400
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        assert await post(f"{server.url}/hooks/jenkins/{SECRET}", {}) == 404


def test_notification_payload_is_read_with_folders() -> None:
    data = {
        "name": "deploy",
        "url": "job/team/job/deploy/",
        "build": {
            "full_url": "https://ci.example.com/job/team/job/deploy/12/",
            "number": 12,
            "queue_id": 40,
            "phase": "COMPLETED",
            "status": "FAILURE",
        },
    }
    assert parse_notification(data) == Notification("team/deploy", 12, 40, "COMPLETED")
    assert parse_notification({"build": {"number": "x", "phase": "STARTED"}}) is None
    assert parse_notification([1, 2]) is None
