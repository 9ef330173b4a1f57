"""The App Home through the real server: Events API deliveries, views.publish, Home buttons."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.home_views import HOME_RUN_ACTION_ID
from bot.views import APPROVE_ACTION_ID
from storage.models import HomeViewer, Run
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_interactive import home_click_body, home_opened_body, json_headers, submit
from tests.slack_signing import ALICE, BOB, CHANNEL, SlackHarness, signed_headers, slack_server

OPS = "C0OPSCHAN1"
GATED = f"""\
name: gated
channel: {OPS}
parameters:
  env: {{required: true, choices: [staging, production]}}
steps:
  - name: Gate
    approval: {{approvers: [{BOB}]}}
  - name: After
    run: echo after
"""
QUICK = """\
name: quick
steps:
  - name: Only
    run: echo quick
"""
BOBS = f"""\
name: bobs-tool
allowed_users: [{BOB}]
steps:
  - name: Only
    run: echo bob
"""


@pytest.fixture
async def slack(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "gated", GATED)
    write_pipeline(pipelines_dir, "quick", QUICK)
    write_pipeline(pipelines_dir, "bobs-tool", BOBS)
    async with slack_server(sqlite_url, pipelines_dir, fake) as harness:
        yield harness


async def open_home(slack: SlackHarness, user: str, **headers: str) -> tuple[int, str]:
    body = home_opened_body(user)
    return await slack.post(body, json_headers(body, **headers))


def homes(slack: SlackHarness, user: str) -> list[dict[str, Any]]:
    return [h.view for h in slack.fake.views_api.homes if h.user == user]


async def home_where(slack: SlackHarness, user: str, ready: Any, count: int = 1) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        shown = homes(slack, user)
        return shown[-1] if len(shown) >= count and ready(shown[-1]) else None

    home = await eventually(probe, timeout=20)
    assert home is not None
    return home


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"])


def buttons(view: dict[str, Any], action_id: str) -> list[str]:
    found = []
    for block in view["blocks"]:
        elements = [*list(block.get("elements") or []), block.get("accessory") or {}]
        found += [e["value"] for e in elements if e.get("action_id") == action_id]
    return found


async def test_url_verification_is_answered_and_must_be_signed(slack: SlackHarness) -> None:
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3g", "type": "url_verification"}
    )
    status, text = await slack.post(body, json_headers(body))
    assert status == 200 and json.loads(text) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3g"}
    status, _ = await slack.post(body, {"Content-Type": "application/json"})
    assert status == 401


async def test_home_opened_publishes_what_the_person_may_run(slack: SlackHarness) -> None:
    status, text = await open_home(slack, ALICE)
    assert (status, text) == (200, "")
    home = await home_where(slack, ALICE, lambda v: True)
    assert home["type"] == "home"
    assert slack.fake.views_api.view_errors == []
    assert buttons(home, HOME_RUN_ACTION_ID) == ["gated", "quick"]  # not bobs-tool
    shown = text_of(home)
    assert f"posts in <#{OPS}>" in shown and "posts in your DM" in shown
    assert "You have not started any runs yet." in shown
    assert "Nothing is waiting for your approval." in shown
    assert await HomeViewer.filter(user_id=ALICE).exists()


async def test_a_retried_event_is_handled_once(slack: SlackHarness) -> None:
    body = home_opened_body(ALICE, event_id="Ev0RETRY0001")
    answers = [await slack.post(body, json_headers(body))]
    for attempt in (1, 2, 3):
        headers = json_headers(body, **{"X-Slack-Retry-Num": str(attempt)})
        headers["X-Slack-Retry-Reason"] = "http_timeout"
        answers.append(await slack.post(body, headers))
    assert [a[0] for a in answers] == [200] * 4
    await home_where(slack, ALICE, lambda v: True)
    await slack.server.core.engine.run_until_idle()
    assert len(slack.fake.calls_for("views.publish")) == 1


async def test_approve_inside_the_home_and_republish_after_each_change(
    slack: SlackHarness,
) -> None:
    await open_home(slack, BOB)
    await home_where(slack, BOB, lambda v: "Nothing is waiting" in text_of(v))
    await open_home(slack, ALICE)
    await home_where(slack, ALICE, lambda v: True)
    await slack.command("run gated env=staging", user=ALICE, channel=OPS)
    # Bob's Home is republished with the approval and its buttons.
    home = await home_where(slack, BOB, lambda v: buttons(v, APPROVE_ACTION_ID))
    assert "*Gate* of *gated #1*" in text_of(home)
    [value] = buttons(home, APPROVE_ACTION_ID)
    body = home_click_body(home, APPROVE_ACTION_ID, BOB)
    status, _ = await slack.post(body, signed_headers(body))
    assert status == 200

    async def finished() -> Run | None:
        return await Run.filter(status="success").first()

    run = await eventually(finished, timeout=20)
    assert run is not None and run.id == int(value.split(":")[0])
    # The approval leaves Bob's Home; Alice's shows her run ended, linked to its thread.
    await home_where(slack, BOB, lambda v: "Nothing is waiting" in text_of(v), count=2)

    def alice_sees_it(view: dict[str, Any]) -> bool:
        shown = text_of(view)
        return "gated #1>" in shown and "succeeded" in shown and "archives/" + OPS in shown

    await home_where(slack, ALICE, alice_sees_it)
    # The decision was answered privately, in Bob's DM (a Home click has no channel).
    dm = slack.fake.views_api.dms[BOB]
    assert any("Approved" in m.text for m in slack.fake.messages(dm))


async def test_a_home_button_for_a_run_that_ended_meanwhile(slack: SlackHarness) -> None:
    await open_home(slack, BOB)
    await home_where(slack, BOB, lambda v: True)
    await slack.command("run gated env=production", user=ALICE, channel=OPS)
    home = await home_where(slack, BOB, lambda v: buttons(v, APPROVE_ACTION_ID))
    await slack.command("cancel 1", user=ALICE, channel=OPS)

    async def cancelled() -> Run | None:
        return await Run.filter(status="cancelled").first()

    await eventually(cancelled, timeout=20)
    body = home_click_body(home, APPROVE_ACTION_ID, BOB)  # the Home Bob still had open
    await slack.post(body, signed_headers(body))

    async def told() -> list[str]:
        dm = slack.fake.views_api.dms.get(BOB)
        return [m.text for m in slack.fake.messages(dm)] if dm else []

    [reply] = await eventually(told, timeout=10)
    assert "already decided" in reply
    assert await Run.filter(status="success").count() == 0


async def test_run_from_the_home_posts_in_the_dm_or_the_pipelines_channel(
    slack: SlackHarness,
) -> None:
    await open_home(slack, ALICE)
    home = await home_where(slack, ALICE, lambda v: True)
    for name, values in [("quick", {}), ("gated", {"param:env": "staging"})]:
        trigger = slack.fake.issue_trigger()
        body = home_click_body(home, HOME_RUN_ACTION_ID, ALICE, value=name, trigger=trigger)
        await slack.post(body, signed_headers(body))

        async def form(trigger: str = trigger) -> Any:
            return [v for v in slack.fake.opened_views if v.trigger_id == trigger]

        [view] = await eventually(form, timeout=10)
        status, answer = await submit(slack, view.view, values)
        assert (status, answer) == (200, None)

    async def both() -> list[Run]:
        runs = await Run.all().order_by("id")
        return runs if len(runs) == 2 else []

    quick, gated = await eventually(both, timeout=10)
    dm = slack.fake.views_api.dms[ALICE]
    assert (quick.pipeline, quick.channel_id) == ("quick", dm)
    assert (gated.pipeline, gated.channel_id) == ("gated", OPS)

    async def card_in_dm() -> object:
        return slack.root_of(quick.id, channel=dm)

    await eventually(card_in_dm, timeout=10)


async def test_a_home_run_button_for_a_pipeline_removed_meanwhile(
    slack: SlackHarness, pipelines_dir: Path
) -> None:
    await open_home(slack, ALICE)
    home = await home_where(slack, ALICE, lambda v: True)
    (pipelines_dir / "quick.yml").unlink()
    body = home_click_body(home, HOME_RUN_ACTION_ID, ALICE, value="quick")
    await slack.post(body, signed_headers(body))

    async def told() -> list[str]:
        dm = slack.fake.views_api.dms.get(ALICE)
        return [m.text for m in slack.fake.messages(dm)] if dm else []

    [reply] = await eventually(told, timeout=10)
    assert "There is no pipeline named `quick`" in reply
    assert slack.fake.calls_for("views.open") == []
    assert CHANNEL not in reply
