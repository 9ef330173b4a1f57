"""The App Home: what one person's Home shows, publishing it, and republishing on changes.

``app_home_opened`` publishes at once (:meth:`HomePublisher.publish`) and
records the person as a Home viewer. Later changes that concern a viewer
(their run starts, changes or ends; an approval they are asked for is
requested or decided) write a ``home_publish`` outbox row in the change's
transaction (:func:`write_home_outbox`); the notifier delivers it like any
other row, on any replica, paced per person (channel ``home:{user}``) and
coalesced (one pending row per person: the view is rendered when it is sent,
so one publish shows every change before it).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from bot.home_views import HomeApproval, HomeData, HomePipeline, HomeRun, home_view
from bot.outcomes import Failure
from engine.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    RunFinished,
    RunStarted,
    RunStatusChanged,
    StepFinished,
)
from engine.permissions import Actor, may_run
from engine.recent import Recent
from engine.runner import Engine
from engine.snapshots import run_snapshot
from engine.state import RUN_TERMINAL, RunStatus
from storage.models import Approval, ApprovalDecision, HomeViewer, OutboxMessage, Run, StepRun
from storage.runs import now

log = logging.getLogger(__name__)

HOME_PUBLISH = "home_publish"
RECENT_RUNS = 10
# Permalinks kept in memory (the most recently used; others are asked for again).
LINKS_KEPT = 1000
# A pipeline without a ``channel`` posts in the person's DM: never one of its
# ``allowed_channels``, so this stands for it in the permission check.
DIRECT_MESSAGE = "direct-message"


def home_key(user: str) -> str:
    return f"home:{user}"


def home_actor(user: str, channel: str | None) -> Actor:
    return Actor(user, channel or DIRECT_MESSAGE)


async def waiting_approvals(user: str) -> list[HomeApproval]:
    """Open gates ``user`` may decide and has not decided yet."""
    found: list[HomeApproval] = []
    for approval in await Approval.filter(outcome__isnull=True).order_by("id").limit(500):
        if user not in (approval.approvers or []):
            continue
        run = await Run.filter(id=approval.run_id).first()
        if run is None or RunStatus(run.status) in RUN_TERMINAL:
            continue
        if run.triggered_by == user and not approval.allow_self_approval:
            continue
        if await ApprovalDecision.filter(approval_id=approval.id, user_id=user).exists():
            continue
        step = await StepRun.filter(id=approval.step_id).first()
        found.append(
            HomeApproval(
                run_id=run.id,
                approval_id=approval.id,
                pipeline=run.pipeline,
                step=step.name if step else "approval",
                started_by=run.triggered_by,
                parameters=dict(run.parameters),
            )
        )
    return found


class HomePublisher:
    def __init__(self, client: AsyncWebClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        self._links: Recent[tuple[str, str], str] = Recent(LINKS_KEPT)

    def runnable(self, user: str) -> list[HomePipeline]:
        catalog = self.engine.source.catalog()
        return [
            HomePipeline(p.name, p.description, p.channel)
            for _, p in sorted(catalog.pipelines.items())
            if may_run(p, home_actor(user, p.channel), self.engine.admins)
        ]

    async def _permalink(self, channel: str | None, ts: str | None) -> str | None:
        if not channel or not ts:
            return None
        known = self._links.get((channel, ts))
        if known is None:
            try:
                res = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
            except SlackApiError as err:  # e.g. the thread was deleted: show it unlinked
                log.info("no permalink for %s/%s: %s", channel, ts, err.response.get("error"))
                return None
            known = str(res["permalink"])
            self._links.put((channel, ts), known)  # a message's link never changes
        return known

    async def data(self, user: str) -> HomeData:
        runs = await Run.filter(triggered_by=user).order_by("-id").limit(RECENT_RUNS)
        shown = [
            HomeRun(run_snapshot(r, []), await self._permalink(r.channel_id, r.thread_ts))
            for r in runs
        ]
        return HomeData(user, self.runnable(user), shown, await waiting_approvals(user))

    async def publish(self, user: str) -> None:
        view = home_view(await self.data(user), now())
        await self.client.views_publish(user_id=user, view=view)

    async def opened(self, user: str) -> None:
        """``app_home_opened``: remember the viewer, publish now."""
        stamp = now()
        if not await HomeViewer.filter(user_id=user).update(opened_at=stamp):
            with contextlib.suppress(IntegrityError):  # opened twice at once: one row
                await HomeViewer.create(user_id=user, opened_at=stamp)
        await self.publish(user)


async def deliver_home(publisher: HomePublisher | None, row: OutboxMessage) -> tuple[None, str]:
    """The notifier's delivery of a ``home_publish`` row."""
    if publisher is None:
        raise Failure("the Home is not ready yet", retry=True, ambiguous=False)
    user = str((row.payload or {}).get("user") or "")
    if not user:
        raise Failure("no user in a home_publish row", retry=False, ambiguous=False)
    await publisher.publish(user)
    return None, row.channel


async def _approvers(event: Event, conn: BaseDBAsyncClient) -> list[str]:
    approval_id = getattr(event, "approval_id", 0)
    if approval_id:
        query = Approval.filter(id=approval_id)
    else:
        step = getattr(event, "step", None)
        if step is None or step.kind != "approval":
            return []
        query = Approval.filter(step_id=step.id)
    rows = await query.using_db(conn).values_list("approvers", flat=True)
    return [str(u) for approvers in rows for u in (approvers or [])]


async def _concerned(event: Event, conn: BaseDBAsyncClient) -> set[str]:
    users: set[str] = set()
    if isinstance(event, RunStarted | RunStatusChanged | RunFinished):
        users.add(event.run.triggered_by)
    if isinstance(event, ApprovalRequested | ApprovalDecided | StepFinished):
        users.update(await _approvers(event, conn))
    return {u for u in users if u}


async def write_home_outbox(event: Event, conn: BaseDBAsyncClient) -> None:
    """In the change's transaction: one pending republish per Home viewer it concerns."""
    users = await _concerned(event, conn)
    if not users:
        return
    viewers = await HomeViewer.filter(user_id__in=sorted(users)).using_db(conn)
    for viewer in viewers:
        key = home_key(viewer.user_id)
        pending = (
            await OutboxMessage.filter(coalesce_key=key, state="pending", attempts=0)
            .using_db(conn)
            .exists()
        )
        if pending:
            continue  # it renders the Home when it is sent: this change is in it
        payload: dict[str, Any] = {"user": viewer.user_id}
        await OutboxMessage.create(
            channel=key, kind=HOME_PUBLISH, coalesce_key=key, payload=payload, using_db=conn
        )
