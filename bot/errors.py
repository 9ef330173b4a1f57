"""Errors of the Slack bot.

SlackStartupError   Slack refused the bot token at start; one line, no token in it
"""

from __future__ import annotations


class SlackStartupError(Exception):
    """Something a person must fix before the bot can start; ``str()`` is one line."""
