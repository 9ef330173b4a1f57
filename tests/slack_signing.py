"""Signed Slack requests to the real server: slash commands and button clicks.

Bodies and headers are built the way Slack sends them:
form-encoded, ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` =
``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.notifier import Pacing
from bot.setup import SLACK_BOT
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import RunningServer, make_settings, serving

SECRET = "test-signing-secret-0123456789"
CHANNEL = "C0DEPLOYS1"
ALICE = "U0ALICE01"
BOB = "U0BOB0001"
FAST = Pacing(
    per_second=50.0,
    settle=0.02,
    burst=10,
    poll_interval=0.1,
    base_backoff=0.05,
    max_backoff=0.5,
    max_retry_after=5.0,
)


def signed_headers(body: str, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def new_trigger() -> str:
    """A trigger_id the fake Slack does not know (views.open refuses it)."""
    return f"9.{uuid.uuid4().hex}"


def command_body(
    text: str, user: str = ALICE, channel: str = CHANNEL, trigger_id: str | None = None
) -> str:
    """Slack gives every command its own trigger_id: two bodies are never the same."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0TEAM0001",
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "deploys",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/ansflow",
            "text": text,
            "api_app_id": "A0APP00001",
            "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.invalid/commands/T0TEAM0001/1/x",
            "trigger_id": trigger_id or new_trigger(),
        }
    )


def click_body(
    message: StoredMessage, action_id: str, user: str, trigger_id: str | None = None
) -> str:
    """A block_actions payload for the button ``action_id`` exactly as ``message`` shows it."""
    for block in message.blocks or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                action = {
                    "action_id": action_id,
                    "block_id": block["block_id"],
                    "type": "button",
                    "text": element["text"],
                    "value": element["value"],
                    "action_ts": f"{time.time():.6f}",
                }
                break
        else:
            continue
        break
    else:
        raise AssertionError(f"no {action_id} button on {message.text!r}")
    payload = {
        "type": "block_actions",
        "user": {
            "id": user,
            "username": user.lower(),
            "name": user.lower(),
            "team_id": "T0TEAM0001",
        },
        "api_app_id": "A0APP00001",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or new_trigger(),
        "team": {"id": "T0TEAM0001", "domain": "fake"},
        "channel": {"id": message.channel, "name": "deploys"},
        "message": {
            "type": "message",
            "ts": message.ts,
            "text": message.text,
            "blocks": message.blocks,
        },
        "state": {"values": {}},
        "response_url": "https://hooks.slack.invalid/actions/T0TEAM0001/1/x",
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


@dataclass
class SlackHarness:
    server: RunningServer
    fake: FakeSlack
    http: aiohttp.ClientSession

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(
            f"{self.server.url}/slack/events", data=body, headers=headers
        ) as res:
            return res.status, await res.text()

    async def command(
        self, text: str, user: str = ALICE, channel: str = CHANNEL
    ) -> tuple[int, str]:
        body = command_body(text, user, channel, self.fake.issue_trigger())
        return await self.post(body, signed_headers(body))

    async def click(self, message: StoredMessage, action_id: str, user: str) -> tuple[int, str]:
        body = click_body(message, action_id, user, self.fake.issue_trigger())
        return await self.post(body, signed_headers(body))

    def roots(self, channel: str = CHANNEL) -> list[StoredMessage]:
        return [m for m in self.fake.messages(channel) if not m.is_reply]

    def root_of(self, run_id: int, channel: str = CHANNEL) -> StoredMessage | None:
        found = [m for m in self.roots(channel) if run_of(m) == run_id]
        assert len(found) <= 1, found
        return found[0] if found else None

    def ephemerals_for(self, user: str) -> list[str]:
        return [e.text for e in self.fake.ephemerals if e.user == user]


def run_of(message: StoredMessage) -> int | None:
    payload: dict[str, Any] = (message.metadata or {}).get("event_payload") or {}
    run = payload.get("run")
    return int(run) if run is not None else None


def slack_env(fake: FakeSlack, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.url,
        **extra,
    }


@asynccontextmanager
async def slack_server(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, pacing: Pacing = FAST, **env: str
) -> AsyncIterator[SlackHarness]:
    settings = make_settings(database_url, pipelines_dir, **slack_env(fake, **env))
    async with serving(settings) as server, aiohttp.ClientSession() as http:
        server.app[SLACK_BOT].notifier.pacing = pacing
        server.app[SLACK_BOT].notifier.poke()
        yield SlackHarness(server, fake, http)
