"""Signed modal submissions, Events API deliveries and Home clicks, shaped as Slack sends them.

``view_submission`` and ``block_actions`` are form bodies with one
``payload`` field; Events API deliveries are JSON, signed like everything else.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.slack_signing import ALICE, SlackHarness, new_trigger, signed_headers

TEAM = {"id": "T0TEAM0001", "domain": "fake"}


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]}


def state_for(view: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """``view.state`` for ``{block_id: value}`` as the person filled the inputs in."""
    state: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block["element"]
        block_id, action_id = block["block_id"], element["action_id"]
        value = values.get(block_id)
        if element["type"] == "static_select":
            chosen = next((o for o in element["options"] if o["value"] == value), None)
            if chosen is None and value is None:
                chosen = element.get("initial_option")
            entry = {"type": "static_select", "selected_option": chosen}
        else:
            typed = value if block_id in values else element.get("initial_value")
            entry = {"type": "plain_text_input", "value": typed}
        state[block_id] = {action_id: entry}
    return {"values": state}


def submission_body(
    view: dict[str, Any],
    values: dict[str, str],
    user: str = ALICE,
    view_id: str = "V0000000001",
    private_metadata: str | None = None,
) -> str:
    shown = {
        **view,
        "id": view_id,
        "team_id": TEAM["id"],
        "state": state_for(view, values),
        "hash": f"{view_id}.1",
    }
    if private_metadata is not None:
        shown["private_metadata"] = private_metadata
    payload = {
        "type": "view_submission",
        "team": TEAM,
        "user": _user(user),
        "api_app_id": "A0APP00001",
        "token": "deprecated-verification-token",
        "trigger_id": new_trigger(),
        "view": shown,
        "response_urls": [],
        "is_enterprise_install": False,
    }
    return urlencode({"payload": json.dumps(payload)})


def event_body(event: dict[str, Any], event_id: str | None = None) -> str:
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM["id"],
            "api_app_id": "A0APP00001",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM["id"], "user_id": "U0BOT00001", "is_bot": True}],
        }
    )


def home_opened_body(user: str, event_id: str | None = None) -> str:
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0000000099",
        "tab": "home",
        "event_ts": f"{time.time():.6f}",
    }
    return event_body(event, event_id)


def json_headers(body: str, **extra: str) -> dict[str, str]:
    return {**signed_headers(body), "Content-Type": "application/json", **extra}


def home_click_body(
    home: dict[str, Any], action_id: str, user: str, value: str | None = None, trigger: str = ""
) -> str:
    """A click on the App Home: ``container.type = view``, no channel, no message."""
    for block in home["blocks"]:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("action_id") == action_id and value in (None, element.get("value")):
                action = {
                    "action_id": action_id,
                    "block_id": block.get("block_id") or "b",
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
        raise AssertionError(f"no {action_id} button ({value}) on the Home")
    payload = {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": "A0APP00001",
        "token": "deprecated-verification-token",
        "container": {"type": "view", "view_id": "V0HOME0001"},
        "trigger_id": trigger or new_trigger(),
        "team": TEAM,
        "is_enterprise_install": False,
        "view": {**home, "id": "V0HOME0001", "team_id": TEAM["id"], "state": {"values": {}}},
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


async def submit(
    slack: SlackHarness, view: dict[str, Any], values: dict[str, str], **kw: Any
) -> tuple[int, dict[str, Any] | None]:
    """Post a signed submission; the modal's answer (None: an empty 200, the modal closes)."""
    body = submission_body(view, values, **kw)
    status, text = await slack.post(body, signed_headers(body))
    return status, (json.loads(text) if text.strip() else None)
