"""The fake Slack's delayed visibility, which the replica tests rely on."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack
from tests.helpers import eventually

CHANNEL = "C0VISIBLE1"


async def test_a_post_shows_in_history_and_replies_only_after_the_visibility_delay() -> None:
    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.url)
        fake.delay_visibility(0.3)
        root = await client.chat_postMessage(channel=CHANNEL, text="root")
        reply = await client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=root["ts"])
        assert reply["ok"]  # threading onto a root nobody can see yet is fine
        history = await client.conversations_history(channel=CHANNEL)
        assert history["messages"] == []
        assert [m.text for m in fake.messages(CHANNEL)] == ["root", "reply"]  # stored at once

        async def shown() -> list[str]:
            try:
                res = await client.conversations_replies(channel=CHANNEL, ts=root["ts"])
            except SlackApiError as err:
                assert err.response["error"] == "thread_not_found"  # the root is not visible yet
                return []
            return [m["text"] for m in res["messages"]]

        assert await eventually(shown, lambda texts: texts == ["root", "reply"], timeout=5)
        history = await client.conversations_history(channel=CHANNEL)
        assert [m["text"] for m in history["messages"]] == ["root"]
