"""The Slack app manifest (``manifest.yml``) and ``ansflow manifest``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

EXAMPLE_URL = "https://ansflow.example.com"
USAGE_HINT = "run PIPELINE [key=value …] | status [ID] | cancel ID | logs ID [STEP] | list"
EVENTS_PATH = "/slack/events"
BOT_SCOPES = [
    "commands",
    "chat:write",
    "chat:write.public",
    "files:write",
    "channels:history",
    "groups:history",
    "users:read",
    "im:write",
]
BOT_EVENTS = ["app_home_opened"]
HEADER = """\
# Slack app manifest for AnsFlow ChatOps.
# Print it for your host with `ansflow manifest --url https://your-host`
# (or `ansflow manifest --socket-mode` for Socket Mode: no public URL, needs
# an app-level token with connections:write as SLACK_APP_TOKEN).
# channels:history / groups:history are only used to avoid double posts
# after a crash; files:write uploads long failure logs into the run thread;
# im:write opens the direct message a run started from the Home tab posts in
# (when its pipeline has no channel). The Home tab is published on
# app_home_opened, delivered to the same Request URL.
"""


def manifest(url: str | None = EXAMPLE_URL, socket_mode: bool = False) -> dict[str, Any]:
    endpoint = None if socket_mode else (url or EXAMPLE_URL).rstrip("/") + EVENTS_PATH
    command: dict[str, Any] = {
        "command": "/ansflow",
        "description": "Run and follow delivery pipelines",
        "usage_hint": USAGE_HINT,
        "should_escape": False,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if endpoint is not None:
        command["url"] = endpoint
        interactivity["request_url"] = endpoint
        events = {"request_url": endpoint, **events}
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": "AnsFlow",
            "description": "Run delivery pipelines from Slack and follow them in a thread",
            "background_color": "#1d3557",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": "ansflow", "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def render(url: str | None = EXAMPLE_URL, socket_mode: bool = False) -> str:
    body = yaml.safe_dump(
        manifest(url, socket_mode), sort_keys=False, allow_unicode=True, width=1000
    )
    return HEADER + body


def cmd_manifest(args: argparse.Namespace) -> int:
    url: str | None = getattr(args, "url", None)
    socket_mode = bool(getattr(args, "socket_mode", False))
    if url is not None and not url.startswith(("https://", "http://")):
        print(f"ansflow: --url must start with https:// (got {url!r})", file=sys.stderr)
        return 2
    if url is None and not socket_mode:
        print(
            f"ansflow: no --url given; using {EXAMPLE_URL} (replace it, or use --socket-mode)",
            file=sys.stderr,
        )
    sys.stdout.write(render(url, socket_mode))
    return 0
