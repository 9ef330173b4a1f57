"""Draining the Slack outbox: paced per channel, coalesced, retried, never doubled.

ARCHITECTURE.md decisions 4 and 9. One worker per channel sends that
channel's pending rows oldest first, at ``Pacing.per_second`` with bursts of
``Pacing.burst``, while it holds the channel's lease (``outbox:{channel}``):
of several replicas one drains a channel at a time, and the pace (the token
bucket) is stored with the lease before each send, so it holds for the
service as a whole across hand-overs. Rules:

* a row is marked ``sent`` only after Slack said ``ok``; a root post stores
  the thread ``ts`` on the run (``storage.runs.set_thread``) first;
* thread replies and card updates wait until the run's root ``ts`` is known,
  and a run's rows leave in order (a row waiting for a retry holds back the
  later rows of its run, not those of other runs);
* 429: the channel waits ``Retry-After``; 5xx, connection errors and
  retryable Slack errors back off exponentially up to ``max_backoff``; other
  Slack errors (``channel_not_found``, ``invalid_blocks``…) end the row
  ``dead``; so does any row older than ``give_up_after``;
* a row is claimed (``attempts + 1``, ``last_error = "in flight"``) before
  the call. A post whose outcome is unknown (the process died during the
  call, or the call timed out) is looked up by its ``metadata`` in the
  channel or thread before it is posted again. File uploads carry no
  metadata and are at-least-once.

A change violates this module when it marks a row sent without an ``ok``
from Slack, or posts a row again whose last outcome is unknown without
looking for it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.home import HOME_PUBLISH, HomePublisher, deliver_home
from bot.outbox import FILE, POST_KINDS, REPLY, REPLY_UPDATE, ROOT_POST, ROOT_UPDATE
from bot.outcomes import (
    IN_FLIGHT,
    METADATA_TYPE,
    UNSURE,
    Failure,
    api_failure,
    is_unsure,
    names_row,
    transport_failure,
)
from engine.recent import Recent
from storage.leases import claim_lease, release_lease, spend_lease_token
from storage.models import OutboxMessage, Run, StepRun
from storage.runs import now, set_thread

log = logging.getLogger(__name__)

PICK_WINDOW = 500
# Runs whose Slack thread is kept in memory (the most recently used; others are read again).
THREADS_KEPT = 1000
LOOKUP_PAGES = 5


@dataclass
class Pacing:
    """How fast and how patiently the notifier talks to Slack (seconds)."""

    # Any 10 s holds at most burst + 10 * per_second = 10 posts: never above 1/s.
    per_second: float = 0.8
    burst: int = 2
    # A card or step row is held this long after it is written, so that quick
    # changes fold into it (a fast run posts its final card and no update).
    settle: float = 0.5
    poll_interval: float = 1.0
    base_backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    give_up_after: float = 24 * 3600.0
    # One replica drains a channel at a time: it holds the channel's lease this long.
    lease_seconds: float = 15.0


@dataclass
class _Channel:
    tokens: float
    updated: float = field(default_factory=time.monotonic)
    not_before: float = 0.0

    def delay(self, pacing: Pacing) -> float:
        at = time.monotonic()
        self.tokens = min(
            float(pacing.burst), self.tokens + (at - self.updated) * pacing.per_second
        )
        self.updated = at
        wait = 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / pacing.per_second
        return max(wait, self.not_before - at)


@dataclass(frozen=True)
class _Pick:
    row: OutboxMessage | None
    pending: bool
    wait: float = 0.0


class _ChannelLease:
    """The lease on one channel's outbox, with the channel's pace stored in it."""

    def __init__(self, channel: str, owner: str, pacing: Pacing) -> None:
        self.name = f"outbox:{channel}"
        self.owner = owner
        self.pacing = pacing
        self.seconds = pacing.lease_seconds
        self._until = 0.0  # monotonic; never later than the database's expiry

    async def take(self) -> _Channel | None:
        started = time.monotonic()
        claim = await claim_lease(
            self.name, self.owner, self.seconds, refill_per_second=self.pacing.per_second
        )
        if not claim.won:
            return None
        self._until = started + self.seconds
        burst = float(self.pacing.burst)
        tokens = burst if claim.fresh or claim.tokens is None else min(burst, claim.tokens)
        return _Channel(tokens=tokens)

    async def keep(self) -> bool:
        """Renew when half the lease is gone; False once it is lost."""
        if time.monotonic() < self._until - self.seconds / 2:
            return True
        started = time.monotonic()
        if not (await claim_lease(self.name, self.owner, self.seconds)).won:
            return False
        self._until = started + self.seconds
        return True

    async def spend(self, tokens_left: float) -> bool:
        started = time.monotonic()
        if not await spend_lease_token(self.name, self.owner, self.seconds, tokens_left):
            return False
        self._until = started + self.seconds
        return True

    async def release(self) -> None:
        await release_lease(self.name, self.owner)


class Notifier:
    def __init__(
        self, client: AsyncWebClient, pacing: Pacing | None = None, owner: str | None = None
    ) -> None:
        self.client = client
        self.pacing = pacing or Pacing()
        # The replica this notifier sends for (the holder of the channel leases it takes).
        self.owner = owner or f"notifier-{uuid.uuid4().hex[:12]}"
        self._channels: dict[str, _Channel] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        # Runs' threads, as (channel, ts): the recent ones; any other is read again.
        self._threads: Recent[int, tuple[str, str]] = Recent(THREADS_KEPT)
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        # Renders and publishes a person's App Home (``home_publish`` rows).
        self.home: HomePublisher | None = None
        # Told of each run whose row got its thread here (the engine then reads it again).
        self.on_thread_set: Callable[[int], None] | None = None

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="slack-notifier")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in [self._main, *self._workers.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._main = None
        self._workers.clear()

    def poke(self) -> None:
        """New rows may be waiting: look now rather than at the next poll."""
        self._wake.set()
        for wake in self._wakes.values():
            wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                channels = (
                    await OutboxMessage.filter(state="pending")
                    .distinct()
                    .values_list("channel", flat=True)
                )
                for channel in channels:
                    worker = self._workers.get(str(channel))
                    if worker is None or worker.done():
                        self._workers[str(channel)] = asyncio.create_task(
                            self._worker(str(channel)), name=f"slack-outbox-{channel}"
                        )
            except Exception:
                log.exception("Slack outbox: could not read pending messages")
            await _wait(self._wake, self.pacing.poll_interval)

    async def _worker(self, channel: str) -> None:
        lease = _ChannelLease(channel, self.owner, self.pacing)
        state = await lease.take()
        if state is None:
            return  # another replica drains this channel now
        self._channels[channel] = state
        wake = self._wakes.setdefault(channel, asyncio.Event())
        try:
            await self._drain(channel, lease, state, wake)
        finally:
            if not self._stopping:
                with contextlib.suppress(Exception):
                    await lease.release()

    async def _drain(
        self, channel: str, lease: _ChannelLease, state: _Channel, wake: asyncio.Event
    ) -> None:
        while not self._stopping:
            wake.clear()
            try:
                if not await lease.keep():
                    return
                pick = await self._pick(channel)
                if pick.row is None:
                    if not pick.pending:
                        return
                    await _wait(wake, min(pick.wait, self.pacing.poll_interval))
                    continue
                delay = state.delay(self.pacing)
                if delay > 0:
                    await asyncio.sleep(min(delay, lease.seconds / 3))
                    continue
                state.tokens -= 1.0
                if not await lease.spend(state.tokens):
                    return  # the lease was lost: the next holder goes on from the stored pace
                await self._send(pick.row, state)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Slack outbox: channel %s worker failed; retrying", channel)
                await asyncio.sleep(self.pacing.poll_interval)

    # ---- choosing the next row ----------------------------------------------

    async def _pick(self, channel: str) -> _Pick:
        rows = (
            await OutboxMessage.filter(channel=channel, state="pending")
            .order_by("id")
            .limit(PICK_WINDOW)
        )
        if not rows:
            return _Pick(None, False)
        latest_update = {r.coalesce_key: r.id for r in rows if r.kind == ROOT_UPDATE}
        current = now()
        blocked: set[int] = set()
        wait = self.pacing.poll_interval
        for row in rows:
            run_id = row.run_id
            if run_id is not None and run_id in blocked:
                continue
            if row.kind == ROOT_UPDATE and latest_update.get(row.coalesce_key) != row.id:
                await _settle(row, "coalesced", None, "superseded by a newer update")
                continue
            ready_at = row.next_attempt_at
            if row.coalesce_key and row.attempts == 0:
                ready_at = row.created_at + timedelta(seconds=self.pacing.settle)
            if ready_at is not None and ready_at > current:
                wait = min(wait, (ready_at - current).total_seconds())
                if run_id is not None:
                    blocked.add(run_id)
                continue
            if row.kind != ROOT_POST and run_id is not None and await self._thread(run_id) is None:
                if await OutboxMessage.filter(run_id=run_id, kind=ROOT_POST, state="dead").exists():
                    await _settle(row, "dead", None, "the run's root message was never posted")
                    continue
                blocked.add(run_id)
                continue
            return _Pick(row, True)
        return _Pick(None, True, max(wait, 0.0))

    async def _thread(self, run_id: int) -> tuple[str, str] | None:
        known = self._threads.get(run_id)
        if known is not None:
            return known
        rows = await Run.filter(id=run_id).values_list("channel_id", "thread_ts")
        if not rows or not rows[0][1]:
            return None
        thread = (str(rows[0][0]), str(rows[0][1]))
        self._threads.put(run_id, thread)
        return thread

    # ---- sending one row ----------------------------------------------------

    async def _send(self, row: OutboxMessage, state: _Channel) -> None:
        unsure = is_unsure(row.last_error)
        claimed = await OutboxMessage.filter(
            id=row.id, state="pending", attempts=row.attempts
        ).update(attempts=row.attempts + 1, last_error=IN_FLIGHT)
        fresh = await OutboxMessage.filter(id=row.id).first() if claimed else None
        if fresh is None:
            return
        try:
            if unsure and fresh.kind in POST_KINDS:
                found = await self._find_posted(fresh)
                if found is not None:
                    log.info(
                        "Slack outbox: row %s had reached Slack before; not posting again", row.id
                    )
                    await self._delivered(fresh, *found)
                    return
                unsure = False
            ts, channel = await self._deliver(fresh)
        except SlackApiError as err:
            await self._failed(fresh, api_failure(err), unsure, state)
            return
        except (TimeoutError, aiohttp.ClientError) as err:
            await self._failed(fresh, transport_failure(err), unsure, state)
            return
        except Failure as failure:
            await self._failed(fresh, failure, unsure, state)
            return
        await self._delivered(fresh, ts, channel)

    async def _deliver(self, row: OutboxMessage) -> tuple[str | None, str]:
        if row.kind == HOME_PUBLISH:
            return await deliver_home(self.home, row)
        payload: dict[str, Any] = dict(row.payload)
        metadata = {
            "event_type": METADATA_TYPE,
            "event_payload": {"row": row.id, "run": row.run_id},
        }
        content = {"text": payload.get("text", ""), "blocks": payload.get("blocks") or None}
        if row.kind == ROOT_POST:
            res = await self.client.chat_postMessage(
                channel=row.channel,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
                **content,
            )
            return str(res["ts"]), str(res["channel"])
        thread = await self._thread(row.run_id) if row.run_id is not None else None
        if thread is None:
            raise Failure("no thread for this message", retry=False, ambiguous=False)
        channel, thread_ts = thread
        if row.kind == ROOT_UPDATE:
            res = await self.client.chat_update(channel=channel, ts=thread_ts, **content)
            return str(res["ts"]), channel
        if row.kind == REPLY:
            res = await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
                reply_broadcast=bool(payload.get("reply_broadcast")),
                **content,
            )
            return str(res["ts"]), channel
        if row.kind == REPLY_UPDATE:
            target = await OutboxMessage.filter(
                coalesce_key=str(payload.get("target_key")), state="sent", result_ts__isnull=False
            ).first()
            if target is None or target.result_ts is None:
                raise Failure("its message is not posted yet", retry=True, ambiguous=False)
            res = await self.client.chat_update(channel=channel, ts=target.result_ts, **content)
            return str(res["ts"]), channel
        if row.kind == FILE:
            step = await StepRun.filter(id=payload.get("step_id")).first()
            if step is None or not step.log:
                return None, channel
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=step.log,
                filename=str(payload.get("filename") or "step.log"),
                title=payload.get("title"),
            )
            return None, channel
        raise Failure(f"unknown outbox kind {row.kind!r}", retry=False, ambiguous=False)

    async def _delivered(self, row: OutboxMessage, ts: str | None, channel: str) -> None:
        if row.kind == ROOT_POST and ts and row.run_id is not None:
            await set_thread(row.run_id, channel, ts)
            self._threads.pop(row.run_id)
            if self.on_thread_set is not None:
                self.on_thread_set(row.run_id)
        await _settle(row, "sent", ts, None)

    async def _failed(
        self, row: OutboxMessage, failure: Failure, unsure: bool, state: _Channel
    ) -> None:
        error = failure.error
        if failure.ambiguous or unsure:
            error = UNSURE + error
        too_old = now() - row.created_at > timedelta(seconds=self.pacing.give_up_after)
        if not failure.retry or too_old:
            log.warning("Slack outbox: giving up on row %s (%s): %s", row.id, row.kind, error)
            await _settle(row, "dead", None, error)
            return
        if failure.after is not None:
            delay = min(failure.after, self.pacing.max_retry_after)
            state.not_before = time.monotonic() + delay
        else:
            exp = self.pacing.base_backoff * 2 ** min(row.attempts - 1, 30)
            delay = min(self.pacing.max_backoff, exp) * random.uniform(0.8, 1.0)
        log.info("Slack outbox: row %s failed (%s); retrying in %.1fs", row.id, error, delay)
        await OutboxMessage.filter(id=row.id, state="pending").update(
            last_error=error, next_attempt_at=now() + timedelta(seconds=delay)
        )

    # ---- finding a post whose outcome is unknown ------------------------------

    async def _find_posted(self, row: OutboxMessage) -> tuple[str, str] | None:
        args: dict[str, Any] = {"channel": row.channel}
        method = "conversations.history"
        if row.kind != ROOT_POST:
            thread = await self._thread(row.run_id) if row.run_id is not None else None
            if thread is None:
                return None
            args = {"channel": thread[0], "ts": thread[1]}
            method = "conversations.replies"
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            params = {**args, "include_all_metadata": "true", "limit": 200}
            if cursor:
                params["cursor"] = cursor
            res = await self.client.api_call(method, http_verb="GET", params=params)
            for message in res.get("messages") or []:
                if names_row(message, row.id):
                    return str(message["ts"]), str(args["channel"])
            cursor = (res.get("response_metadata") or {}).get("next_cursor") or None
            if not res.get("has_more") or not cursor:
                break
        return None


async def _settle(row: OutboxMessage, state: str, ts: str | None, error: str | None) -> None:
    fields: dict[str, Any] = {"state": state, "last_error": error}
    if state == "sent":
        fields.update(sent_at=now(), result_ts=ts)
    await OutboxMessage.filter(id=row.id, state="pending").update(**fields)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
