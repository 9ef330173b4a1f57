"""The fake Slack's views.*, chat.getPermalink and conversations.open answer as Slack does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack

CHANNEL = "C0000000042"


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.url)


def modal(**extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "c",
        "title": {"type": "plain_text", "text": "Title"},
        "submit": {"type": "plain_text", "text": "Go"},
        "blocks": [
            {
                "type": "input",
                "block_id": "b",
                "label": {"type": "plain_text", "text": "L"},
                "element": {"type": "plain_text_input", "action_id": "a"},
            }
        ],
        **extra,
    }


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as err:
        await call
    return str(err.value.response["error"])


async def test_a_trigger_opens_one_view_within_three_seconds(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    trigger = fake.issue_trigger()
    res = await client.views_open(trigger_id=trigger, view=modal())
    assert res["view"]["id"].startswith("V") and res["view"]["callback_id"] == "c"
    assert await error_of(client.views_open(trigger_id=trigger, view=modal())) == (
        "exchanged_trigger_id"
    )
    stale = fake.views_api.issue_trigger(at=time.monotonic() - 3.5)
    assert await error_of(client.views_open(trigger_id=stale, view=modal())) == (
        "expired_trigger_id"
    )
    assert await error_of(client.views_open(trigger_id="1.2.x", view=modal())) == (
        "invalid_trigger_id"
    )
    assert len(fake.opened_views) == 1


@pytest.mark.parametrize(
    ("view", "problem"),
    [
        (modal(title={"type": "plain_text", "text": "x" * 25}), "title is longer than 24"),
        (modal(submit=None), "needs a submit button"),
        (modal(blocks=[{"type": "divider"}] * 101), "at most 100"),
        (modal(private_metadata="m" * 3001), "private_metadata"),
        (modal(type="home"), "view type must be 'modal'"),
        (
            modal(blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "t" * 3001}}]),
            "longer than 3000",
        ),
        (
            modal(
                blocks=[
                    {
                        "type": "input",
                        "block_id": "s",
                        "label": {"type": "plain_text", "text": "L"},
                        "element": {
                            "type": "static_select",
                            "action_id": "a",
                            "options": [
                                {"text": {"type": "plain_text", "text": str(i)}, "value": str(i)}
                                for i in range(101)
                            ],
                        },
                    }
                ]
            ),
            "1 to 100 options",
        ),
    ],
)
async def test_views_that_break_block_kit_are_refused(
    fake: FakeSlack, client: AsyncWebClient, view: dict[str, Any], problem: str
) -> None:
    view = {k: v for k, v in view.items() if v is not None}
    trigger = fake.issue_trigger()
    assert await error_of(client.views_open(trigger_id=trigger, view=view)) == "invalid_arguments"
    assert any(problem in p for p in fake.views_api.view_errors), fake.views_api.view_errors
    assert fake.opened_views == []


async def test_views_publish_sets_a_home(fake: FakeSlack, client: AsyncWebClient) -> None:
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
    }
    await client.views_publish(user_id="U0ALICE01", view=home)
    assert fake.home_of("U0ALICE01") == home
    too_big = {"type": "home", "blocks": [{"type": "divider"}] * 101}
    assert await error_of(client.views_publish(user_id="U0ALICE01", view=too_big)) == (
        "invalid_arguments"
    )
    assert await error_of(client.views_publish(user_id="U0ALICE01", view=modal())) == (
        "invalid_arguments"
    )
    assert fake.home_of("U0ALICE01") == home


async def test_permalinks_and_direct_messages(fake: FakeSlack, client: AsyncWebClient) -> None:
    root = await client.chat_postMessage(channel=CHANNEL, text="root")
    reply = await client.chat_postMessage(channel=CHANNEL, text="r", thread_ts=root["ts"])
    link = (await client.chat_getPermalink(channel=CHANNEL, message_ts=root["ts"]))["permalink"]
    assert link.startswith(f"https://fake-workspace.slack.com/archives/{CHANNEL}/p")
    res = await client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])
    assert f"thread_ts={root['ts']}" in res["permalink"]
    assert await error_of(client.chat_getPermalink(channel=CHANNEL, message_ts="1.2")) == (
        "message_not_found"
    )
    dm = (await client.conversations_open(users="U0ALICE01"))["channel"]["id"]
    assert (
        dm.startswith("D")
        and (await client.conversations_open(users="U0ALICE01"))["channel"]["id"] == dm
    )
    await client.chat_postMessage(channel=dm, text="private")
    assert [m.text for m in fake.messages(dm)] == ["private"]
