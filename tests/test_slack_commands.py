"""Slash commands through the real server: signatures, the ack, private errors, each command."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from ansflow.app import build_app
from bot.errors import SlackStartupError
from storage.models import OutboxMessage, Run
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, make_settings, write_pipeline
from tests.slack_signing import (
    ALICE,
    BOB,
    CHANNEL,
    SlackHarness,
    command_body,
    signed_headers,
    slack_env,
    slack_server,
)

DEPLOY = """\
name: deploy-web
description: Build and deploy the web app
parameters:
  version: {default: "1.0", pattern: '^[0-9.]+$'}
  env: {choices: [staging, production], required: true}
steps:
  - name: Build
    run: echo "building $version"
"""
PAYLOAD = """\
name: payload-svc
parameters:
  note: {default: none}
steps:
  - name: Ship
    run: echo "payload $note"
"""
RESTRICTED = f"""\
name: prod-db
allowed_users: [{BOB}]
steps:
  - name: Migrate
    run: echo migrate
"""
ELSEWHERE = """\
name: ops-only
allowed_channels: [C0OPSONLY1]
steps:
  - name: Fix
    run: echo fix
"""


@pytest.fixture
async def slack(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    for name, text in [
        ("deploy-web", DEPLOY),
        ("payload-svc", PAYLOAD),
        ("prod-db", RESTRICTED),
        ("ops-only", ELSEWHERE),
    ]:
        write_pipeline(pipelines_dir, name, text)
    async with slack_server(sqlite_url, pipelines_dir, fake) as harness:
        yield harness


async def private_reply(slack: SlackHarness, user: str = ALICE, count: int = 1) -> str:
    async def probe() -> list[str]:
        return slack.ephemerals_for(user)

    replies = await eventually(probe, ready=lambda v: len(v) >= count, timeout=10)
    return replies[count - 1]


async def nothing_created(slack: SlackHarness) -> None:
    await slack.server.core.engine.run_until_idle()
    assert await Run.all().count() == 0
    assert await OutboxMessage.all().count() == 0
    assert [m for m in slack.fake.calls_for("chat.postMessage")] == []


# ---- signatures -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: {"Content-Type": "application/x-www-form-urlencoded"}, id="none"),
        pytest.param(lambda body: signed_headers(body, secret="wrong-secret"), id="wrong-secret"),
        pytest.param(
            lambda body: signed_headers(body, timestamp=int(time.time()) - 301), id="stale"
        ),
        pytest.param(
            lambda body: signed_headers(body, timestamp=int(time.time()) + 301), id="future"
        ),
        pytest.param(lambda body: signed_headers(body + "&x=1"), id="body-changed"),
    ],
)
async def test_bad_signature_is_401_and_does_nothing(slack: SlackHarness, headers: object) -> None:
    body = command_body("run deploy-web env=staging")
    status, text = await slack.post(body, headers(body))  # type: ignore[operator]
    assert status == 401
    assert "deploy-web" not in text
    await nothing_created(slack)
    assert slack.fake.ephemerals == []


async def test_signed_request_within_five_minutes_is_accepted(slack: SlackHarness) -> None:
    body = command_body("help")
    status, _ = await slack.post(body, signed_headers(body, timestamp=int(time.time()) - 240))
    assert status == 200
    assert "/ansflow run PIPELINE" in await private_reply(slack)


# ---- run ----------------------------------------------------------------------


async def test_the_word_payload_is_an_ordinary_word(slack: SlackHarness) -> None:
    status, _ = await slack.command("run payload-svc note=payload")
    assert status == 200

    async def run() -> Run | None:
        return await Run.filter(pipeline="payload-svc", status="success").first()

    found = await eventually(run, timeout=20)
    assert found is not None and found.parameters == {"note": "payload"}
    assert found.source == "slack" and found.channel_id == CHANNEL


async def test_run_acks_at_once_and_posts_the_card(slack: SlackHarness) -> None:
    status, text = await slack.command("run deploy-web env=production")
    assert status == 200 and text == ""

    async def roots() -> int:
        return len(slack.roots())

    await eventually(roots, ready=lambda n: n == 1, timeout=20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "run deploy-wbe env=staging",
            "There is no pipeline named `deploy-wbe`. Did you mean `deploy-web`?",
        ),
        (
            "run nosuch",
            "There is no pipeline named `nosuch`. "
            "Pipelines you may run here: `deploy-web`, `payload-svc`.",
        ),
        ("run deploy-web env=qa", "`env` must be one of staging, production"),
        ("run deploy-web env=staging version=abc", "`version` must match"),
        ("run deploy-web env=staging colour=red", "Unknown parameter colour"),
        ('run deploy-web env="staging', "quote at character"),
        ("run deploy-web colour=red", "Unknown parameter colour"),
        ("run deploy-web staging", "Unexpected `staging`"),
        ("frobnicate", "There is no command `frobnicate`"),
        ("run prod-db", "You are not allowed to run `prod-db`"),
        ("run ops-only", "may only be run from <#C0OPSONLY1>"),
        ("cancel abc", "`abc` is not a run id"),
        ("cancel 999", "There is no run with id 999"),
        ("status 999", "There is no run with id 999"),
        ("logs 999", "There is no run with id 999"),
    ],
)
async def test_input_errors_go_only_to_the_asker_and_create_nothing(
    slack: SlackHarness, text: str, expected: str
) -> None:
    status, _ = await slack.command(text)
    assert status == 200
    reply = await private_reply(slack)
    assert expected in reply
    [ephemeral] = slack.fake.ephemerals
    assert (ephemeral.user, ephemeral.channel) == (ALICE, CHANNEL)
    assert ephemeral.blocks is None  # said once, not again in blocks
    assert slack.fake.opened_views == []
    await nothing_created(slack)


# ---- list, help, status, logs -----------------------------------------------------


async def test_list_shows_only_what_the_caller_may_run_with_parameters(slack: SlackHarness) -> None:
    await slack.command("list")
    [ephemeral] = [e for e in await _ephemerals(slack, ALICE)]
    shown = str(ephemeral.blocks)
    assert "deploy-web" in shown and "payload-svc" in shown
    assert "prod-db" not in shown and "ops-only" not in shown
    assert "`env` one of `staging`, `production` *required*" in shown
    assert "`version` matching `^[0-9.]+$` default `1.0`" in shown
    await slack.command("list", user=BOB)
    [for_bob] = await _ephemerals(slack, BOB)
    assert "prod-db" in str(for_bob.blocks)


async def _ephemerals(slack: SlackHarness, user: str) -> list:  # type: ignore[type-arg]
    async def probe() -> list:  # type: ignore[type-arg]
        return [e for e in slack.fake.ephemerals if e.user == user]

    return await eventually(probe, timeout=10)  # type: ignore[no-any-return]


async def test_status_and_logs_of_a_finished_run(slack: SlackHarness) -> None:
    await slack.command("run deploy-web env=staging version=3.0")

    async def done() -> Run | None:
        return await Run.filter(status="success").first()

    run = await eventually(done, timeout=20)
    assert run is not None
    await slack.command(f"status {run.id}")
    detail = await private_reply(slack)
    assert f"deploy-web #{run.id} succeeded" in detail
    await slack.command("status")
    recent = await private_reply(slack, count=2)
    assert f"deploy-web #{run.id}" in recent
    await slack.command(f"logs {run.id} build")
    await private_reply(slack, count=3)
    logs = slack.fake.ephemerals[2]
    assert "building 3.0" in str(logs.blocks) and "whole log" in str(logs.blocks)
    await slack.command(f"logs {run.id} Nope")
    assert "has no step named `Nope`" in await private_reply(slack, count=4)


async def test_status_without_runs_and_help(slack: SlackHarness) -> None:
    await slack.command("status")
    assert "not started any runs" in await private_reply(slack)
    await slack.command("")
    assert "/ansflow logs RUN_ID [STEP]" in await private_reply(slack, count=2)


# ---- start-up ----------------------------------------------------------------------


async def test_a_bad_bot_token_stops_the_start_with_one_line(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    env = slack_env(fake, SLACK_BOT_TOKEN="xoxb-revoked")
    app = build_app(make_settings(sqlite_url, pipelines_dir, **env))
    runner = web.AppRunner(app)
    with pytest.raises(SlackStartupError) as err:
        await runner.setup()
    await runner.cleanup()
    assert str(err.value) == "invalid setting SLACK_BOT_TOKEN: Slack refused it (invalid_auth)"
    assert "xoxb" not in str(err.value)


async def test_slack_off_writes_no_outbox_rows(sqlite_url: str, pipelines_dir: Path) -> None:
    from engine.permissions import Actor
    from engine.runner import RunRequest
    from tests.helpers import serving

    write_pipeline(
        pipelines_dir,
        "deploy-web",
        DEPLOY.replace("name: deploy-web", "name: deploy-web\nchannel: C0DEPLOYS1"),
    )
    async with serving(make_settings(sqlite_url, pipelines_dir)) as server:
        snap = await server.core.engine.start_run(
            RunRequest("deploy-web", {"env": "staging"}, Actor("U1", trusted=True))
        )
        await server.core.engine.wait_finished(snap.id, timeout=20)
        assert await OutboxMessage.all().count() == 0
        assert (await Run.get(id=snap.id)).channel_id == "C0DEPLOYS1"
