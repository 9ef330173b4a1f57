"""Each Slack request acts once, whichever replica receives it, however often.

Slack's ack goes out first (it never waits for the database); then, before
the request acts, its key is stored in ``seen_event`` (a primary key, so one
insert wins across every replica): an Events API delivery's ``event_id``
(Slack's retries reuse it), otherwise the SHA-256 of the request's payload.
Every command, click and submission carries its own ``trigger_id`` (and a
click its ``action_ts``), so two genuine requests never share a payload, while
a resend, a retry or a replay of the identical signed request does (over HTTP
and over Socket Mode alike). Keys older than :data:`KEEP_SECONDS` are pruned
now and then (Slack retries events for about an hour; a replayed request's
signature expires after five minutes).

When the database cannot be reached the key cannot be stored: the request
does not act and the asker is told privately (``Seen.NO_DATABASE``,
:func:`database_down`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import timedelta
from enum import StrEnum
from typing import Any

from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError

from storage.models import SeenEvent
from storage.runs import now

log = logging.getLogger(__name__)

# After the ack nothing waits on this but the asker: a busy database is not a down one.
STORE_TIMEOUT = 10.0
KEEP_SECONDS = 3600
PRUNE_EVERY = 200


class Seen(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    NO_DATABASE = "no_database"


def request_key(body: dict[str, Any]) -> str:
    """``event_id`` for an Events API delivery, else a digest of the whole payload."""
    if body.get("type") == "event_callback" and body.get("event_id"):
        return str(body["event_id"])[:64]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def database_down(err: BaseException) -> bool:
    """Whether ``err`` means the database cannot be reached (rather than a bug)."""
    if isinstance(err, DBConnectionError | OSError | ConnectionError | TimeoutError):
        return True
    name = type(err).__module__ + "." + type(err).__name__
    if name.startswith("asyncpg.") and (
        "Connection" in name or "Interface" in name or "CannotConnectNow" in name
    ):
        return True
    if isinstance(err, OperationalError):
        text = str(err).lower()
        return any(w in text for w in ("connect", "closed", "unable to open", "terminat"))
    cause = err.__cause__ or err.__context__
    return cause is not None and cause is not err and database_down(cause)


class RequestLedger:
    def __init__(self) -> None:
        self._since_prune = 0

    async def first_time(self, key: str) -> Seen:
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                await SeenEvent.create(event_id=key)
                await self._maybe_prune()
        except IntegrityError:
            return Seen.DUPLICATE
        except Exception as err:
            if not database_down(err):
                raise
            log.warning("Slack request not handled: the database is unreachable (%s)", err)
            return Seen.NO_DATABASE
        return Seen.NEW

    async def _maybe_prune(self) -> None:
        self._since_prune += 1
        if self._since_prune < PRUNE_EVERY:
            return
        self._since_prune = 0
        cutoff = now() - timedelta(seconds=KEEP_SECONDS)
        await SeenEvent.filter(seen_at__lt=cutoff).delete()
