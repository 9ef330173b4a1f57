"""Socket Mode through the real server: envelopes in over a WebSocket, acks back, runs, Cancel.

The server gets SLACK_BOT_TOKEN and an ``xapp-`` SLACK_APP_TOKEN and no signing
secret; FakeSlack's ``apps.connections.open`` hands out FakeSocketMode's URL.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web

from ansflow.app import build_app
from bot.errors import SlackStartupError
from bot.setup import SLACK_BOT
from bot.views import CANCEL_ACTION_ID
from engine.state import RunStatus
from storage.models import Run
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.fakes.slack_socket import FakeSocketMode
from tests.helpers import RunningServer, eventually, make_settings, serving, write_pipeline
from tests.slack_signing import ALICE, CHANNEL, FAST, click_body, command_body, run_of

DEPLOY = """\
name: deploy-web
parameters:
  env: {choices: [staging, production], required: true}
steps:
  - name: Build
    run: echo "building for $env"
  - name: Deploy
    run: echo deployed
"""

SLOW = """\
name: slow-svc
steps:
  - name: Wait
    run: sleep 300
"""

ACK_DEADLINE = 3.0  # Slack's


def command_payload(text: str, user: str = ALICE) -> dict[str, Any]:
    """A slash command's fields, as Socket Mode carries them (JSON, not a form)."""
    return dict(parse_qsl(command_body(text, user)))


def click_payload(message: StoredMessage, action_id: str, user: str) -> dict[str, Any]:
    """The block_actions payload for the button exactly as ``message`` shows it."""
    payload: dict[str, Any] = json.loads(
        dict(parse_qsl(click_body(message, action_id, user)))["payload"]
    )
    return payload


@dataclass
class SocketHarness:
    server: RunningServer
    fake: FakeSlack
    socket: FakeSocketMode

    async def command(self, text: str, user: str = ALICE) -> str:
        """Send `/ansflow TEXT`; returns the envelope id once it is acked in time."""
        eid = await self.socket.slash_command(command_payload(text, user))
        await self.socket.wait_ack(eid, timeout=ACK_DEADLINE)
        return eid

    def roots(self) -> list[StoredMessage]:
        return [m for m in self.fake.messages(CHANNEL) if not m.is_reply]

    def root_of(self, run_id: int) -> StoredMessage | None:
        found = [m for m in self.roots() if run_of(m) == run_id]
        assert len(found) <= 1, found
        return found[0] if found else None

    def broadcasts(self) -> list[StoredMessage]:
        return [m for m in self.fake.messages(CHANNEL) if m.reply_broadcast]

    def ephemerals_for(self, user: str) -> list[str]:
        return [e.text for e in self.fake.ephemerals if e.user == user]


def socket_env(fake: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_APP_TOKEN": fake.app_token,
        "SLACK_API_URL": fake.url,
    }


@pytest.fixture
async def socket(fake: FakeSlack) -> AsyncIterator[FakeSocketMode]:
    async with FakeSocketMode() as server:
        fake.ws_url = server.url
        yield server


@pytest.fixture
async def slack(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, socket: FakeSocketMode
) -> AsyncIterator[SocketHarness]:
    write_pipeline(pipelines_dir, "deploy-web", DEPLOY)
    write_pipeline(pipelines_dir, "slow-svc", SLOW)
    settings = make_settings(database_url, pipelines_dir, **socket_env(fake))
    async with serving(settings) as server:
        server.app[SLACK_BOT].notifier.pacing = FAST
        server.app[SLACK_BOT].notifier.poke()
        await socket.wait_connected()
        yield SocketHarness(server, fake, socket)
    await eventually(lambda: _value(socket.open_connections == 0), timeout=5)  # closed on stop


async def finished_run() -> Run:
    async def probe() -> Run | None:
        run = await Run.first()
        return run if run is not None and run.status in ("success", "failed", "cancelled") else None

    run = await eventually(probe, timeout=30)
    assert run is not None
    return run


async def _value(flag: bool) -> bool:
    return flag


async def test_slash_command_over_the_socket_is_acked_and_the_run_posts_once(
    slack: SocketHarness,
) -> None:
    [opened] = slack.fake.calls_for("apps.connections.open")
    assert opened.error is None and slack.socket.open_connections == 1

    eid = await slack.command("run deploy-web env=staging")
    [ack] = slack.socket.acks_for(eid)
    assert ack.payload is None  # a bare ack; the answers come through the Web API

    run = await finished_run()
    assert run.status == RunStatus.SUCCESS
    assert run.source == "slack" and run.channel_id == CHANNEL and run.triggered_by == ALICE

    def settled() -> bool:
        root = slack.root_of(run.id)
        return root is not None and "succeeded" in root.text and bool(slack.broadcasts())

    await eventually(lambda: _value(settled()), timeout=20)
    assert len(slack.roots()) == 1
    root = slack.root_of(run.id)
    assert root is not None and CANCEL_ACTION_ID not in root.action_ids()
    assert (await Run.get(id=run.id)).thread_ts == root.ts
    [final] = slack.broadcasts()
    assert "succeeded" in final.text and final.thread_ts == root.ts
    thread = slack.fake.thread(CHANNEL, root.ts)
    assert len(slack.fake.calls_for("chat.postMessage")) == len(thread)
    assert await Run.all().count() == 1
    assert slack.socket.other == []


async def test_slack_events_url_is_not_served_in_socket_mode(slack: SocketHarness) -> None:
    body = command_body("run deploy-web env=staging")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{slack.server.url}/slack/events", data=body) as res,
    ):
        assert res.status == 404
    assert await Run.all().count() == 0


async def test_cancel_click_over_the_socket_and_a_redelivered_click_changes_nothing(
    slack: SocketHarness,
) -> None:
    await slack.command("run slow-svc")
    run = await eventually(Run.first, timeout=20)
    assert run is not None

    async def root_with_button() -> StoredMessage | None:
        root = slack.root_of(run.id)
        return root if root is not None and CANCEL_ACTION_ID in root.action_ids() else None

    root = copy.deepcopy(await eventually(root_with_button, timeout=20))
    assert root is not None
    click = click_payload(root, CANCEL_ACTION_ID, ALICE)
    eid = await slack.socket.interactive(click)
    await slack.socket.wait_ack(eid, timeout=ACK_DEADLINE)

    finished = await finished_run()
    assert finished.status == RunStatus.CANCELLED and finished.cancel_requested_by == ALICE
    await eventually(lambda: _value(len(slack.ephemerals_for(ALICE)) == 1), timeout=10)

    # the same envelope again, as a resend would deliver it: acked, and it acts no more
    await slack.socket.interactive(click, envelope_id=eid, retry_attempt=1)
    await eventually(lambda: _value(len(slack.socket.acks_for(eid)) == 2), timeout=ACK_DEADLINE)
    # a new press of the same button is a new request: answered
    again = await slack.socket.interactive(click_payload(root, CANCEL_ACTION_ID, ALICE))
    await slack.socket.wait_ack(again, timeout=ACK_DEADLINE)
    await eventually(lambda: _value(len(slack.ephemerals_for(ALICE)) == 2), timeout=10)
    await slack.server.core.engine.run_until_idle()
    assert len(slack.ephemerals_for(ALICE)) == 2
    assert "already ended" in slack.ephemerals_for(ALICE)[-1]
    after = await Run.get(id=run.id)
    assert after.status == RunStatus.CANCELLED and after.cancel_requested_by == ALICE
    assert await Run.all().count() == 1

    def cancelled_card() -> bool:
        current = slack.root_of(run.id)
        return current is not None and "cancelled" in current.text and bool(slack.broadcasts())

    await eventually(lambda: _value(cancelled_card()), timeout=20)
    current = slack.root_of(run.id)
    assert current is not None and CANCEL_ACTION_ID not in current.action_ids()
    assert len(slack.roots()) == 1 and len(slack.broadcasts()) == 1


async def test_disconnect_message_moves_to_a_new_connection_and_commands_still_work(
    slack: SocketHarness,
) -> None:
    await slack.socket.disconnect()
    await slack.socket.wait_connected(connects=2)
    assert len(slack.fake.calls_for("apps.connections.open")) == 2
    await slack.command("run deploy-web env=production")
    run = await finished_run()
    assert run.status == RunStatus.SUCCESS
    await eventually(lambda: _value(bool(slack.broadcasts())), timeout=20)
    assert len(slack.roots()) == 1


async def test_app_token_refused_stops_the_start_with_one_line(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack, socket: FakeSocketMode
) -> None:
    env = {**socket_env(fake), "SLACK_APP_TOKEN": "xapp-wrong"}
    runner = web.AppRunner(build_app(make_settings(sqlite_url, pipelines_dir, **env)))
    with pytest.raises(SlackStartupError) as err:
        await asyncio.wait_for(runner.setup(), 10)  # used to retry every 10 s, forever
    await runner.cleanup()
    assert str(err.value) == "invalid setting SLACK_APP_TOKEN: Slack refused it (invalid_auth)"
    assert "xapp" not in str(err.value)
    assert socket.connects == 0


async def test_slack_down_at_start_does_not_block_it_and_the_socket_connects_later(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack, socket: FakeSocketMode
) -> None:
    write_pipeline(pipelines_dir, "deploy-web", DEPLOY)
    fake.fail_next("apps.connections.open", status=500)
    settings = make_settings(sqlite_url, pipelines_dir, **socket_env(fake))
    async with serving(settings) as server:
        server.app[SLACK_BOT].notifier.pacing = FAST
        await socket.wait_connected()
        opened = fake.calls_for("apps.connections.open")
        assert [c.status for c in opened] == [500, 200], opened
        harness = SocketHarness(server, fake, socket)
        await harness.command("run deploy-web env=staging")
        assert (await finished_run()).status == RunStatus.SUCCESS
