"""The Slack bot's own settings, as the composition root hands them over."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    signing_secret: str  # empty in Socket Mode without one: no /slack/events then
    app_token: str | None = None  # xapp-…: Socket Mode
    api_url: str | None = None
    lease_seconds: float = 15.0
