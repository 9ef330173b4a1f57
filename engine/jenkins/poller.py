"""Following every open Jenkins step of a tool with a bounded number of requests.

One APScheduler interval job per tool (``max_instances=1``, ``coalesce``) runs
:meth:`JenkinsPoller.poll_tool`. Per interval it asks, whatever the number of
builds in flight:

1. ``computer/api/json?tree=…``: every build still running (one request, only
   when some step has a build);
2. ``queue/api/json``: every item still waiting (one request, only when
   some step waits in the queue);
3. for each job with a step whose build is no longer running, or whose queue
   item left the queue: that job's recent builds, ``tree``-filtered (one
   request per such job, so none while nothing changed);
4. details only for what changed: the console tail of a failed build, a
   build too old for the recent list, a queue item not yet seen as a build;
   at most ``DETAILS_PER_POLL`` of those, the rest wait for the next interval.

Of several replicas, one polls a tool: the holder of its lease ``poller:{id}``
(1.5 intervals long, renewed by every poll); when it dies another takes over
within about two intervals. While Jenkins is down the tool's polls back off
(doubling from the interval up to ``backoff_cap``) and resume by themselves on
the first success; meanwhile each of its open steps carries the reason
"Jenkins … unreachable: …; retrying", cleared once Jenkins answers, and fails
once its timeout has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from engine.executors.base import StepOutcome
from engine.jenkins.cancel import end_unconfirmed, request_stop
from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import JenkinsError, JenkinsNotFound, JenkinsUnreachable
from engine.jenkins.follow import Follower, OpenStep, wall
from engine.jenkins.models import BuildInfo
from engine.jenkins.phases import RETRYING, TRIGGERING, backoff, timed_out_reason, unreachable_note
from engine.jenkins.tools import ToolClients, ToolMissing, jenkins_tools, mark_health
from engine.state import StepStatus
from storage.leases import take_lease

log = logging.getLogger(__name__)

DETAILS_PER_POLL = 10
JOB_LISTS_PER_POLL = 20
RECENT_BUILDS = 50
RECENT_BUILDS_MAX = 400
CANCEL_CONFIRM_WITHIN = 60.0
CLOSE_WAIT = 2.0


class _Budget:
    def __init__(self, size: int) -> None:
        self.left = size

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class JenkinsPoller:
    def __init__(
        self,
        follower: Follower,
        clients: ToolClients,
        interval: float,
        *,
        cancel_confirm_within: float = CANCEL_CONFIRM_WITHIN,
        owner: str | None = None,
    ) -> None:
        self.follower = follower
        # One poller per tool for the whole service: the holder of ``poller:{tool}``.
        self.owner = owner
        self.lease_seconds = max(1.0, interval * 1.5)
        self.clients = clients
        self.interval = interval
        self.backoff_cap = max(interval, min(60.0, interval * 32))
        self.cancel_confirm_within = cancel_confirm_within
        self.polls: dict[int, int] = {}  # polls that asked Jenkins, per tool (tests, bench)
        self._failures: dict[int, int] = {}
        self._resume_at: dict[int, float] = {}
        self._closed = False
        self._running: set[asyncio.Task[object]] = set()

    # -- scheduled jobs --------------------------------------------------------------

    async def poll_tool(self, tool_id: int) -> None:
        if self.owner is not None and not await self._hold(tool_id):
            return  # another replica polls this tool
        await self._tracked(self._poll_tool(tool_id))

    async def _hold(self, tool_id: int) -> bool:
        try:
            return await take_lease(f"poller:{tool_id}", self.owner or "", self.lease_seconds)
        except Exception as exc:
            log.warning("polling tool %s: cannot take the poller lease (%s)", tool_id, exc)
            return False

    async def check_health(self) -> None:
        """Record, for every Jenkins tool, whether it answers an authenticated request."""
        await self._tracked(self._check_health())

    async def close(self) -> None:
        """Start no more polls; let those running end (briefly), then cancel them."""
        self._closed = True
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=CLOSE_WAIT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def backing_off(self, tool_id: int) -> bool:
        return time.monotonic() < self._resume_at.get(tool_id, 0.0)

    def failures(self, tool_id: int) -> int:
        """Failed polls in a row (0 once Jenkins answers again)."""
        return self._failures.get(tool_id, 0)

    async def _tracked(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.current_task()
        if self._closed or task is None:
            work.close()
            return
        self._running.add(task)
        try:
            await work
        finally:
            self._running.discard(task)

    async def _poll_tool(self, tool_id: int) -> None:
        if time.monotonic() < self._resume_at.get(tool_id, 0.0):
            return
        try:
            tool, client = await self.clients.by_id(tool_id)
        except ToolMissing:
            return
        steps = [
            s for s in await self.follower.open_steps(tool.name) if s.state.phase != TRIGGERING
        ]
        if not steps:
            return
        self.polls[tool_id] = self.polls.get(tool_id, 0) + 1
        try:
            await self._poll(client, steps)
        except JenkinsError as exc:
            failures = self._failures[tool_id] = self._failures.get(tool_id, 0) + 1
            delay = backoff(failures, self.interval, self.backoff_cap)
            self._resume_at[tool_id] = time.monotonic() + delay
            if failures == 1 or delay >= self.backoff_cap:
                log.warning("polling tool %s: %s (next try in %.1f s)", tool.name, exc, delay)
            if isinstance(exc, JenkinsUnreachable):
                note = unreachable_note(tool.name, exc.detail)
                for step in steps:
                    if step.reason != note:
                        await self.follower.note(step.step_id, note)
            return
        if self._failures.pop(tool_id, 0):
            log.info("polling tool %s: Jenkins answers again", tool.name)
        self._resume_at.pop(tool_id, None)
        for step in steps:
            if step.reason and step.reason.endswith(RETRYING):
                await self.follower.note(step.step_id, None)

    async def _check_health(self) -> None:
        for tool in await jenkins_tools():
            client = self.clients.client_for(tool)
            try:
                await client.whoami()
            except JenkinsError as exc:
                await mark_health(tool.id, False, str(exc))
            else:
                await mark_health(tool.id, True)

    # -- one poll --------------------------------------------------------------------

    async def _poll(self, client: JenkinsClient, steps: Sequence[OpenStep]) -> None:
        budget = _Budget(DETAILS_PER_POLL)
        steps = [s for s in steps if not await self._cancel_or_time_out(client, s, budget)]
        building = [s for s in steps if s.state.build is not None]
        queued = [s for s in steps if s.state.build is None and s.state.queue is not None]
        running: set[tuple[str | None, int]] = set()
        if building:
            running = {(b.job, b.number) for b in await client.running_builds()}
        ended = [s for s in building if (s.state.job, s.state.build) not in running]
        left: list[OpenStep] = []
        if queued:
            waiting = {item.number for item in await client.queue()}
            left = [s for s in queued if s.state.queue not in waiting]
        recent: dict[str, list[BuildInfo]] = {}
        for job in sorted({s.state.job for s in ended} | {s.state.job for s in left}):
            if len(recent) >= JOB_LISTS_PER_POLL:
                break
            recent[job] = await client.recent_builds(job, _list_size(job, building))
        unresolved: list[OpenStep] = []
        for step in left:
            builds = recent.get(step.state.job)
            build = next((b for b in builds or () if b.queue_id == step.state.queue), None)
            if build is not None:
                await self._started(client, step, build, budget)
            elif builds is not None:
                unresolved.append(step)
        for step in ended:
            builds = recent.get(step.state.job)
            if builds is None:
                continue
            found = next((b for b in builds if b.number == step.state.build), None)
            if found is None and budget.take():
                found = await self._build(client, step)
            if found is not None and not found.building:
                await self._settle(client, step, found, budget)
        await self._check_queue_items(client, unresolved, budget)

    async def _cancel_or_time_out(
        self, client: JenkinsClient, step: OpenStep, budget: _Budget
    ) -> bool:
        """Handle a pending cancel or an expired timeout; True when nothing else is to do."""
        state = step.state
        if state.stop_requested_at is not None:
            if await end_unconfirmed(self.follower, step, self.cancel_confirm_within):
                return True
            if not state.stop_sent and budget.take():
                async with self.follower.locked(step.step_id) as fresh:
                    if fresh is not None:
                        await request_stop(self.follower, fresh, client)
                return True
            return False
        if state.deadline is None or wall() < state.deadline or not budget.take():
            return False
        async with self.follower.locked(step.step_id) as fresh:
            if fresh is None:
                return True
            try:
                if fresh.state.build is not None:
                    await client.stop(fresh.state.job, fresh.state.build)
                elif fresh.state.queue is not None:
                    await client.cancel_queue_item(fresh.state.queue)
            except JenkinsError as exc:
                log.warning("run %s: could not stop the timed-out build: %s", step.run_id, exc)
            reason = timed_out_reason(state.timeout, fresh.reason)
            await self.follower.finish(fresh, StepOutcome(StepStatus.FAILED, reason=reason))
        return True

    async def _started(
        self, client: JenkinsClient, step: OpenStep, build: BuildInfo, budget: _Budget
    ) -> None:
        async with self.follower.locked(step.step_id) as fresh:
            if fresh is None:
                return
            fresh = await self.follower.building(fresh, build.number, build.url)
        if not build.building:
            await self._settle(client, fresh, build, budget)

    async def _settle(
        self, client: JenkinsClient, step: OpenStep, build: BuildInfo, budget: _Budget
    ) -> None:
        if build.result != "SUCCESS" and not budget.take():
            return  # its console tail is fetched next time
        async with self.follower.locked(step.step_id) as fresh:
            if fresh is not None:
                await self.follower.settle(fresh, client, build)

    async def _build(self, client: JenkinsClient, step: OpenStep) -> BuildInfo | None:
        assert step.state.build is not None
        try:
            return await client.build(step.state.job, step.state.build)
        except JenkinsNotFound as exc:
            await self.follower.fail(step, str(exc))
            return None

    async def _check_queue_items(
        self, client: JenkinsClient, steps: list[OpenStep], budget: _Budget
    ) -> None:
        """Items that left the queue with no build among the recent ones (cancelled, or old)."""
        for step in steps:
            if not budget.take():
                return
            assert step.state.queue is not None
            try:
                item = await client.queue_item(step.state.queue)
            except JenkinsNotFound as exc:
                await self.follower.fail(step, str(exc))
                continue
            if item.build_number is not None and item.build_url is not None:
                async with self.follower.locked(step.step_id) as fresh:
                    if fresh is not None:
                        await self.follower.building(fresh, item.build_number, item.build_url)
            elif item.cancelled:
                reason = f"Jenkins queue item {item.number} was cancelled in Jenkins"
                await self.follower.fail(step, reason)


def _list_size(job: str, building: Sequence[OpenStep]) -> int:
    """Enough recent builds to hold all of ours on `job` (when few others ran meanwhile)."""
    numbers = [s.state.build for s in building if s.state.job == job and s.state.build]
    span = max(numbers) - min(numbers) if numbers else 0
    return min(RECENT_BUILDS_MAX, RECENT_BUILDS + span)
