"""What a Slack answer means for an outbox row: retry, give up, or maybe delivered.

Pure classification of ``slack_sdk`` and ``aiohttp`` outcomes, used by
``bot/notifier.py``. A row's ``last_error`` records whether its last post may
have reached Slack (``IN_FLIGHT`` or the ``UNSURE`` prefix): such a row is
looked up by its ``metadata`` before it is posted again.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

IN_FLIGHT = "in flight"
UNSURE = "unsure: "
METADATA_TYPE = "ansflow_outbox"
RETRYABLE = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class Failure(Exception):
    """Why a call failed; ``retry``: try again later; ``ambiguous``: Slack may have it."""

    def __init__(self, error: str, *, retry: bool, ambiguous: bool, after: float | None = None):
        super().__init__(error)
        self.error, self.retry, self.ambiguous, self.after = error, retry, ambiguous, after


def names_row(message: dict[str, Any], row_id: int) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(metadata.get("event_type") == METADATA_TYPE and payload.get("row") == row_id)


def is_unsure(last_error: str | None) -> bool:
    return last_error is not None and (last_error == IN_FLIGHT or last_error.startswith(UNSURE))


def api_failure(err: SlackApiError) -> Failure:
    response = err.response
    status = int(getattr(response, "status_code", 200) or 200)
    code = str(response.get("error") or f"http {status}") if response is not None else "unknown"
    if status == 429 or code == "ratelimited":
        headers = getattr(response, "headers", {}) or {}
        try:
            after = float(headers.get("Retry-After") or headers.get("retry-after") or 1)
        except ValueError:
            after = 1.0
        return Failure("ratelimited", retry=True, ambiguous=False, after=max(after, 0.0))
    if status >= 500 or code in RETRYABLE:
        return Failure(f"{code} (HTTP {status})", retry=True, ambiguous=False)
    return Failure(code, retry=False, ambiguous=False)


def transport_failure(err: BaseException) -> Failure:
    # Never connected: Slack cannot have the message. Anything later: it might.
    ambiguous = not isinstance(err, aiohttp.ClientConnectorError)
    return Failure(f"{type(err).__name__}: {err}"[:300], retry=True, ambiguous=ambiguous)
