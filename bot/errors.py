"""Errors of the Slack bot.

StartupError (ansflow.serve)
└── SlackStartupError   Slack refused the bot token at start; one line, no token in it
"""

from __future__ import annotations

from ansflow.serve import StartupError


class SlackStartupError(StartupError):
    pass
