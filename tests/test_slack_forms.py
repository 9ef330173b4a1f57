"""The parameter form and the picker through the real server, as Slack drives them.

``/ansflow run PIPELINE`` with a required value missing opens a modal with
that command's trigger_id (the fake refuses a stale or reused trigger and a
view that breaks Block Kit's rules); submissions are signed requests whose
answer is the HTTP response.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.form_views import FormContext, sign_context
from storage.models import OutboxMessage, Run
from tests.fakes.slack import FakeSlack, OpenedView
from tests.helpers import eventually, write_pipeline
from tests.slack_interactive import submit
from tests.slack_signing import (
    ALICE,
    BOB,
    CHANNEL,
    SECRET,
    SlackHarness,
    command_body,
    signed_headers,
    slack_server,
)

DEPLOY = """\
name: deploy-web
description: Build and deploy the web app
parameters:
  version: {default: "1.0", pattern: '^[0-9.]+$', description: Version to deploy}
  env: {choices: [staging, production], required: true}
  note: {description: Free text}
steps:
  - name: Build
    run: echo "building $version for $env"
"""
RESTRICTED = f"""\
name: prod-db
allowed_users: [{BOB}]
parameters:
  target: {{required: true}}
steps:
  - name: Migrate
    run: echo migrate
"""
MANY = (
    "name: many-knobs\nparameters:\n"
    + "".join(f"  p{i}: {{default: 'x'}}\n" for i in range(120))
    + "  must: {required: true}\nsteps:\n  - name: S\n    run: 'true'\n"
)


@pytest.fixture
async def slack(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "deploy-web", DEPLOY)
    write_pipeline(pipelines_dir, "prod-db", RESTRICTED)
    async with slack_server(sqlite_url, pipelines_dir, fake) as harness:
        yield harness


async def opened(slack: SlackHarness, count: int = 1) -> OpenedView:
    async def probe() -> list[OpenedView]:
        return slack.fake.opened_views

    views = await eventually(probe, ready=lambda v: len(v) >= count, timeout=10)
    return views[count - 1]


async def private_reply(slack: SlackHarness, user: str = ALICE, count: int = 1) -> str:
    async def probe() -> list[str]:
        return slack.ephemerals_for(user)

    return (await eventually(probe, ready=lambda v: len(v) >= count, timeout=10))[count - 1]


def inputs(view: OpenedView) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view.input_blocks()}


async def nothing_created(slack: SlackHarness) -> None:
    await slack.server.core.engine.run_until_idle()
    assert await Run.all().count() == 0
    assert await OutboxMessage.filter(kind="root_post").count() == 0


async def test_missing_required_value_opens_the_form_with_the_commands_trigger(
    slack: SlackHarness,
) -> None:
    trigger = slack.fake.issue_trigger()
    body = command_body("run deploy-web note=hello", trigger_id=trigger)
    status, text = await slack.post(body, signed_headers(body))
    assert (status, text) == (200, "")
    view = await opened(slack)
    assert view.trigger_id == trigger
    assert slack.fake.views_api.view_errors == []
    assert view.callback_id == "run_form"
    shown = inputs(view)
    assert list(shown) == ["param:version", "param:env", "param:note"]
    version, env, note = shown.values()
    assert version["element"]["initial_value"] == "1.0" and version["optional"] is True
    assert version["hint"]["text"] == "Version to deploy. Must match the pattern ^[0-9.]+$"
    assert [o["value"] for o in env["element"]["options"]] == ["staging", "production"]
    assert env["optional"] is False and "initial_option" not in env["element"]
    assert note["element"]["initial_value"] == "hello"  # what was typed is kept
    assert f"<#{CHANNEL}>" in str(view.blocks)
    assert slack.fake.ephemerals == []
    await nothing_created(slack)


async def test_an_invalid_value_is_answered_on_its_input_and_creates_nothing(
    slack: SlackHarness,
) -> None:
    await slack.command("run deploy-web")
    view = await opened(slack)
    status, answer = await submit(
        slack, view.view, {"param:env": "staging", "param:version": "abc"}
    )
    assert status == 200
    assert answer == {
        "response_action": "errors",
        "errors": {"param:version": "`version` must match ^[0-9.]+$ (got 'abc')."},
    }
    status, answer = await submit(slack, view.view, {"param:version": "2.0"})
    assert answer is not None and list(answer["errors"]) == ["param:env"]
    assert "Missing required parameter `env`" in answer["errors"]["param:env"]
    await nothing_created(slack)


async def test_a_valid_submission_closes_the_form_and_starts_the_run_in_that_channel(
    slack: SlackHarness,
) -> None:
    await slack.command("run deploy-web")
    view = await opened(slack)
    status, answer = await submit(slack, view.view, {"param:env": "production"})
    assert (status, answer) == (200, None)

    async def finished() -> Run | None:
        return await Run.filter(status="success").first()

    run = await eventually(finished, timeout=20)
    assert run is not None
    assert run.parameters == {"env": "production", "version": "1.0"}
    assert (run.triggered_by, run.channel_id, run.source) == (ALICE, CHANNEL, "slack")

    async def card() -> object:
        return slack.root_of(run.id)

    await eventually(card, timeout=10)
    assert await Run.all().count() == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("removed", "The pipeline `deploy-web` no longer exists."),
        ("restricted", "You are not allowed to run `deploy-web`."),
        ("tampered", "This form is no longer valid."),
        ("other-user", "This form is no longer valid."),
    ],
)
async def test_a_submission_that_can_no_longer_run_is_refused_in_the_form(
    slack: SlackHarness, pipelines_dir: Path, change: str, expected: str
) -> None:
    await slack.command("run deploy-web")
    view = await opened(slack)
    kwargs: dict[str, Any] = {}
    if change == "removed":
        (pipelines_dir / "deploy-web.yml").unlink()
    elif change == "restricted":
        write_pipeline(pipelines_dir, "deploy-web", f"allowed_users: [{BOB}]\n" + DEPLOY)
    elif change == "tampered":
        # The pipeline swapped for one Alice may not run, signed with the wrong key.
        kwargs["private_metadata"] = sign_context(
            FormContext("prod-db", ALICE, CHANNEL), b"not-the-key"
        )
    else:
        kwargs["user"] = BOB
    status, answer = await submit(slack, view.view, {"param:env": "staging"}, **kwargs)
    assert status == 200 and answer is not None
    assert answer["response_action"] == "update"
    assert expected in str(answer["view"]["blocks"])
    assert "submit" not in answer["view"]
    await nothing_created(slack)


async def test_a_signed_metadata_is_checked_with_the_signing_secret(slack: SlackHarness) -> None:
    await slack.command("run deploy-web")
    view = await opened(slack)
    good = sign_context(FormContext("deploy-web", ALICE, CHANNEL), SECRET.encode())
    assert view.private_metadata == good


async def test_a_stale_trigger_gets_a_private_answer_and_no_form(slack: SlackHarness) -> None:
    stale = slack.fake.views_api.issue_trigger(at=time.monotonic() - 4)
    body = command_body("run deploy-web", trigger_id=stale)
    await slack.post(body, signed_headers(body))
    assert "did not let the form open in time" in await private_reply(slack)
    [call] = slack.fake.calls_for("views.open")
    assert call.error == "expired_trigger_id"
    assert slack.fake.opened_views == []
    await nothing_created(slack)


async def test_a_pipeline_too_big_for_a_form_says_how_to_run_it(
    slack: SlackHarness, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "many-knobs", MANY)
    await slack.command("run many-knobs")
    reply = await private_reply(slack)
    assert "has 121 parameters, more than a Slack form can hold" in reply
    assert "`/ansflow run many-knobs key=value …`" in reply
    assert slack.fake.calls_for("views.open") == []


async def test_a_refused_person_gets_no_form(slack: SlackHarness) -> None:
    await slack.command("run prod-db")
    assert "You are not allowed to run `prod-db`" in await private_reply(slack)
    assert slack.fake.calls_for("views.open") == []


async def test_run_alone_opens_the_picker_then_the_form(slack: SlackHarness) -> None:
    await slack.command("run")
    picker = await opened(slack)
    assert picker.callback_id == "run_picker"
    [select] = picker.input_blocks()
    assert [o["value"] for o in select["element"]["options"]] == ["deploy-web"]  # not prod-db
    status, answer = await submit(slack, picker.view, {})
    assert answer == {"response_action": "errors", "errors": {"pipeline": "Choose a pipeline."}}
    status, answer = await submit(slack, picker.view, {"pipeline": "deploy-web"})
    assert status == 200 and answer is not None and answer["response_action"] == "update"
    form = answer["view"]
    assert form["callback_id"] == "run_form"
    assert [b["block_id"] for b in form["blocks"] if b["type"] == "input"][:2] == [
        "param:version",
        "param:env",
    ]
    status, answer = await submit(slack, form, {"param:env": "staging"})
    assert answer is None

    async def started() -> Run | None:
        return await Run.filter(pipeline="deploy-web").first()

    run = await eventually(started, timeout=10)
    assert run is not None and run.channel_id == CHANNEL and run.parameters["env"] == "staging"


async def test_the_picker_says_so_when_nothing_may_be_run(
    slack: SlackHarness, pipelines_dir: Path
) -> None:
    (pipelines_dir / "deploy-web.yml").unlink()
    await slack.command("run")
    assert "There are no pipelines you may run here." in await private_reply(slack)
    assert slack.fake.calls_for("views.open") == []
