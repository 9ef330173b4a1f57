"""The fake Slack answers the real AsyncWebClient the way Slack does."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack

CHANNEL = "C0000000042"


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.url)


async def test_url_is_local_and_ends_with_api(fake: FakeSlack) -> None:
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.url.endswith("/api/")


async def test_auth_test_shape_and_scopes_header(fake: FakeSlack, client: AsyncWebClient) -> None:
    res = await client.auth_test()
    for key in ("url", "team", "user", "team_id", "user_id", "bot_id"):
        assert res[key]
    assert "chat:write" in res.headers["x-oauth-scopes"]
    assert fake.calls_for("auth.test")[0].ok


async def test_post_update_thread_and_metadata_round_trip(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    metadata = {"event_type": "ansflow_run", "event_payload": {"run_id": 7}}
    root = await client.chat_postMessage(
        channel=CHANNEL,
        text="Run 7 queued",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "queued"}}],
        metadata=metadata,
    )
    assert root["channel"] == CHANNEL
    assert root["message"]["metadata"] == metadata
    reply = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="step 1")
    broadcast = await client.chat_postMessage(
        channel=CHANNEL, thread_ts=root["ts"], text="done", reply_broadcast=True
    )
    assert float(root["ts"]) < float(reply["ts"]) < float(broadcast["ts"])

    updated = await client.chat_update(channel=CHANNEL, ts=root["ts"], text="Run 7 succeeded")
    assert (updated["channel"], updated["ts"], updated["text"]) == (
        CHANNEL,
        root["ts"],
        "Run 7 succeeded",
    )

    stored = fake.messages(CHANNEL)
    assert [m.text for m in stored] == ["Run 7 succeeded", "step 1", "done"]
    assert stored[0].versions[0]["text"] == "Run 7 queued"
    assert stored[0].blocks is not None and stored[0].metadata == metadata
    assert [m.text for m in fake.thread(CHANNEL, root["ts"])] == [
        "Run 7 succeeded",
        "step 1",
        "done",
    ]

    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert [m["text"] for m in history["messages"]] == ["done", "Run 7 succeeded"]
    assert history["messages"][1]["metadata"] == metadata
    assert history["messages"][1]["reply_count"] == 2
    plain = await client.conversations_history(channel=CHANNEL)
    assert "metadata" not in plain["messages"][1]

    replies = await client.conversations_replies(
        channel=CHANNEL, ts=root["ts"], include_all_metadata=True
    )
    assert [m["text"] for m in replies["messages"]] == ["Run 7 succeeded", "step 1", "done"]
    assert replies["messages"][0]["metadata"] == metadata
    assert all(m["thread_ts"] == root["ts"] for m in replies["messages"])


async def test_channel_name_resolves_to_an_id_that_update_needs(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    res = await client.chat_postMessage(channel="#deploys", text="hi")
    assert res["channel"] == fake.channel_id("#deploys") != "#deploys"
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="#deploys", ts=res["ts"], text="x")
    assert err.value.response["error"] == "channel_not_found"
    await client.chat_update(channel=res["channel"], ts=res["ts"], text="x")
    assert fake.messages("#deploys")[0].text == "x"


async def test_action_ids_are_listed(fake: FakeSlack, client: AsyncWebClient) -> None:
    button = {
        "type": "button",
        "action_id": "cancel_run",
        "text": {"type": "plain_text", "text": "Cancel"},
    }
    await client.chat_postMessage(
        channel=CHANNEL, text="running", blocks=[{"type": "actions", "elements": [button]}]
    )
    assert fake.messages(CHANNEL)[0].action_ids() == ["cancel_run"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": CHANNEL}, "no_text"),
        ({"channel": CHANNEL, "text": "x", "thread_ts": "1.000001"}, "invalid_thread_ts"),
        ({"channel": CHANNEL, "text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        (
            {
                "channel": CHANNEL,
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}],
            },
            "invalid_blocks",
        ),
    ],
)
async def test_post_message_rejects_what_slack_rejects(
    fake: FakeSlack, client: AsyncWebClient, kwargs: dict[str, object], error: str
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.postMessage", json=kwargs)
    assert err.value.response["error"] == error
    assert fake.messages(CHANNEL) == []


async def test_update_of_unknown_message_is_message_not_found(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.chat_postMessage(channel=CHANNEL, text="a")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="b")
    assert err.value.response["error"] == "message_not_found"


async def test_ephemeral_is_recorded_not_posted(fake: FakeSlack, client: AsyncWebClient) -> None:
    res = await client.chat_postEphemeral(channel=CHANNEL, user="U123", text="only you")
    assert res["message_ts"]
    assert [(e.user, e.text) for e in fake.ephemerals] == [("U123", "only you")]
    assert fake.messages(CHANNEL) == []


async def test_429_raises_with_retry_after_and_stores_nothing(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"
    assert err.value.response["error"] == "ratelimited"
    assert fake.messages(CHANNEL) == []
    await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert [c.status for c in fake.calls_for("chat.postMessage")] == [429, 200]
    assert len(fake.messages(CHANNEL)) == 1


async def test_500_fails_exactly_times(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", status=500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=CHANNEL, text="hi")
        assert err.value.response.status_code == 500
        assert err.value.response["error"] == "internal_error"
    await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert len(fake.messages(CHANNEL)) == 1


async def test_any_slack_error_can_be_injected(fake: FakeSlack, client: AsyncWebClient) -> None:
    res = await client.chat_postMessage(channel=CHANNEL, text="a")
    fake.fail_next("chat.update", status=200, error="cant_update_message")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=CHANNEL, ts=res["ts"], text="b")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "cant_update_message"
    assert fake.messages(CHANNEL)[0].text == "a"


@pytest.mark.parametrize(
    ("token", "error"),
    [("xoxb-wrong", "invalid_auth"), ("xapp-test-token", "not_allowed_token_type")],
)
async def test_bad_token_is_refused(fake: FakeSlack, token: str, error: str) -> None:
    client = AsyncWebClient(token=token, base_url=fake.url)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == error
    assert fake.messages(CHANNEL) == []


async def test_missing_token_is_not_authed(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.url).auth_test()
    assert err.value.response["error"] == "not_authed"


async def test_token_in_form_field_is_accepted(fake: FakeSlack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + "auth.test", data={"token": fake.bot_token}) as res,
    ):
        assert res.content_type == "application/json"
        assert (await res.json())["ok"] is True


async def test_unknown_method(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.frobnicate", json={"channel": CHANNEL})
    assert err.value.response["error"] == "unknown_method"


async def test_unknown_fields_are_ignored(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=CHANNEL, text="hi", team_id="T999")
    assert fake.calls_for("chat.postMessage")[0].args["team_id"] == "T999"


async def test_files_upload_v2_is_recorded(fake: FakeSlack, client: AsyncWebClient) -> None:
    root = await client.chat_postMessage(channel=CHANNEL, text="run 7")
    res = await client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=root["ts"],
        content="line 1\nline 2\n",
        filename="build.log",
        title="build log",
    )
    assert res["file"]["id"]
    [upload] = fake.files
    assert upload.content == b"line 1\nline 2\n"
    assert (upload.title, upload.filename) == ("build log", "build.log")
    assert (upload.channel, upload.thread_ts) == (CHANNEL, root["ts"])


async def test_apps_connections_open_needs_the_app_token(fake: FakeSlack) -> None:
    fake.ws_url = "ws://127.0.0.1:1/socket"
    app_client = AsyncWebClient(base_url=fake.url)
    res = await app_client.apps_connections_open(app_token=fake.app_token)
    assert res["url"] == "ws://127.0.0.1:1/socket"
    with pytest.raises(SlackApiError) as err:
        await app_client.apps_connections_open(app_token=fake.bot_token)
    assert err.value.response["error"] == "not_allowed_token_type"


async def test_users_info(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user("U0ALICE", "alice", "Alice Smith")
    res = await client.users_info(user="U0ALICE")
    assert res["user"]["real_name"] == "Alice Smith"
    assert (await client.users_info(user="U0BOB"))["user"]["id"] == "U0BOB"
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="nobody")
    assert err.value.response["error"] == "user_not_found"


async def test_down_answers_503_until_up(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.go_down()
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert err.value.response.status_code == 503
    assert fake.messages(CHANNEL) == []
    fake.come_up()
    await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert len(fake.messages(CHANNEL)) == 1


async def test_down_for_seconds_comes_back_by_itself(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.go_down(0.2)
    with pytest.raises(SlackApiError):
        await client.auth_test()
    deadline = time.monotonic() + 5
    while True:
        try:
            await client.auth_test()
            break
        except SlackApiError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def test_delay_makes_a_client_time_out_after_the_post_took_effect(fake: FakeSlack) -> None:
    fake.delay(2.0, method="chat.postMessage")
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.url, timeout=1)
    with pytest.raises(asyncio.TimeoutError):
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert len(fake.messages(CHANNEL)) == 1


async def test_per_channel_rate_limit(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.rate_limit_per_channel(max_per_second=1.0)
    await client.chat_postMessage(channel=CHANNEL, text="1")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="2")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C0000000099", text="other channel")
    await client.chat_update(
        channel=CHANNEL, ts=fake.messages(CHANNEL)[0].ts, text="updates are not limited"
    )
    assert [m.text for m in fake.messages(CHANNEL)] == ["updates are not limited"]


async def test_rate_limit_allows_a_burst_then_refills(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.rate_limit_per_channel(max_per_second=20.0, burst=3)
    for i in range(3):
        await client.chat_postMessage(channel=CHANNEL, text=str(i))
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=CHANNEL, text="too fast")
    deadline = time.monotonic() + 5
    while True:
        try:
            await client.chat_postMessage(channel=CHANNEL, text="later")
            break
        except SlackApiError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    assert [m.text for m in fake.messages(CHANNEL)] == ["0", "1", "2", "later"]
