"""``jenkins`` steps: trigger the job, then leave the following to the poller.

``start`` writes the ``triggering`` state (with a marker unique to the step
attempt) before any request, then a task reads the job, stores the lower bound
of its build number, POSTs, and stores the queue item URL the moment Jenkins
returns it. From then on the poller (and the webhook) move the step. A
trigger whose answer was lost (Jenkins unreachable, or the process died) is
looked for in Jenkins before it is ever sent again (ARCHITECTURE.md decision 10).

While Jenkins cannot be reached the trigger is retried with a backoff that
doubles up to ``retry_cap``, the step's reason saying so ("Jenkins jenkins
unreachable: connection refused; retrying", cleared once Jenkins answers),
until the step's timeout (its own, else the pipeline's, else
``DEFAULT_TIMEOUT``) has passed: then the step fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from engine.executors.base import DEFAULT_TIMEOUT, StepContext, StepOutcome, step_timeout
from engine.jenkins.cancel import request_stop
from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import JenkinsAlreadyQueued, JenkinsError, JenkinsUnreachable
from engine.jenkins.follow import Follower, OpenStep, wall
from engine.jenkins.models import queue_number_from_url
from engine.jenkins.phases import (
    MARKER_PARAM,
    TRIGGERING,
    FollowState,
    backoff,
    is_ours_queued,
    marker_for,
    parameters_to_send,
    substitute,
    timed_out_reason,
    unreachable_note,
)
from engine.jenkins.reconcile import find_trigger
from engine.jenkins.tools import ToolClients, ToolMissing
from engine.pipelines import JenkinsSpec
from engine.state import StepStatus

log = logging.getLogger(__name__)


class _Refused(Exception):
    """The trigger cannot go on; ``str()`` is the step's reason."""


@dataclass
class _Trigger:
    cancelled: bool = False


class JenkinsExecutor:
    kind = "jenkins"
    started_status = StepStatus.RUNNING

    def __init__(
        self,
        follower: Follower,
        clients: ToolClients,
        *,
        retry_base: float = 1.0,
        retry_cap: float = 30.0,
    ) -> None:
        self.follower = follower
        self.clients = clients
        # Jenkins unreachable while triggering: waits doubling from base up to cap,
        # until the step's timeout.
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._triggering: dict[int, _Trigger] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the Executor protocol ----------------------------------------------------

    async def start(self, ctx: StepContext) -> None:
        spec = ctx.spec
        assert isinstance(spec, JenkinsSpec)
        timeout = step_timeout(spec, ctx.pipeline)
        state = FollowState(
            phase=TRIGGERING,
            tool=spec.jenkins.tool,
            job=spec.jenkins.job.strip("/"),
            marker=marker_for(ctx.run_id, ctx.step_id, ctx.attempt),
            params=substitute(spec.jenkins.parameters, ctx.parameters),
            timeout=timeout,
            deadline=wall() + timeout,
        )
        await self.follower.save(ctx.run_id, ctx.step_id, state)
        self._spawn_trigger(OpenStep(ctx.run_id, ctx.step_id, state))

    async def cancel(self, ctx: StepContext) -> None:
        flag = self._triggering.get(ctx.step_id)
        if flag is not None:
            flag.cancelled = True  # the trigger task cancels what it queued
            return
        async with self.follower.locked(ctx.step_id) as step:
            if step is None:
                await ctx.finish(StepOutcome(StepStatus.CANCELLED, reason="cancelled"))
                return
            if step.state.phase == TRIGGERING:
                # No task of ours is triggering it (a previous process was): find, then cancel.
                self._spawn_trigger(step, cancelled=True)
                return
            try:
                _, client = await self.clients.by_name(step.state.tool)
            except ToolMissing as exc:
                await self.follower.finish(
                    step, StepOutcome(StepStatus.CANCELLED, reason=f"cancelled ({exc})")
                )
                return
            await request_stop(self.follower, step, client)

    async def recover(self, ctx: StepContext) -> None:
        state = FollowState.from_json(ctx.external_state)
        if state is None:
            await self.start(ctx)  # died before the first write: nothing was sent
        elif state.phase == TRIGGERING:
            self._spawn_trigger(OpenStep(ctx.run_id, ctx.step_id, state))
        # queued / building: the poller follows it from what is stored.

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop triggering (a process stopping mid-trigger is what recovery is for)."""
        self._closed = True  # also ends a retry loop whose cancel got lost in a wait_for
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- triggering ------------------------------------------------------------------

    def _spawn_trigger(self, step: OpenStep, cancelled: bool = False) -> None:
        flag = self._triggering.setdefault(step.step_id, _Trigger())
        flag.cancelled = flag.cancelled or cancelled
        self._spawn(self._trigger(step, flag))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _trigger(self, step: OpenStep, flag: _Trigger) -> None:
        try:
            await self._trigger_with_retries(step, flag)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: triggering Jenkins failed", step.run_id)
            await self.follower.fail(step, "triggering the Jenkins build failed unexpectedly")
        finally:
            self._triggering.pop(step.step_id, None)
        if flag.cancelled:  # asked while we triggered: from now on cancel() goes the usual way
            await self._cancel_queued_or_building(step.step_id)

    async def _trigger_with_retries(self, step: OpenStep, flag: _Trigger) -> None:
        timeout = step.state.timeout or DEFAULT_TIMEOUT
        deadline = step.state.deadline or wall() + timeout
        failures = 0
        while True:  # bounded: every failure waits, and the deadline ends it
            try:
                _, client = await self.clients.by_name(step.state.tool)
                await self._trigger_once(step, client, flag)
            except JenkinsUnreachable as exc:
                if self._closed:
                    return  # stopping: the next process picks the trigger up
                failures += 1
                left = deadline - wall()
                note = unreachable_note(step.state.tool, exc.detail)
                if left <= 0:
                    await self.follower.fail(step, timed_out_reason(timeout, note))
                    return
                if flag.cancelled and not step.state.posted_maybe:
                    cancelled = StepOutcome(
                        StepStatus.CANCELLED, reason="cancelled before Jenkins queued a build"
                    )
                    await self.follower.finish(step, cancelled)
                    return
                if failures == 1:
                    log.warning("run %s: %s (trying again until the timeout)", step.run_id, exc)
                await self.follower.note(step.step_id, note)
                await asyncio.sleep(min(backoff(failures, self.retry_base, self.retry_cap), left))
                if self._closed:
                    return
                fresh = await self.follower.read(step.step_id)
                if fresh is None:
                    return  # ended meanwhile
                step = fresh
            except (JenkinsError, ToolMissing, _Refused) as exc:
                await self.follower.fail(step, str(exc))
                return
            else:
                if failures:
                    log.info("run %s: Jenkins answers again", step.run_id)
                    await self.follower.note(step.step_id, None)
                return

    async def _trigger_once(self, step: OpenStep, client: JenkinsClient, flag: _Trigger) -> None:
        if step.state.posted_maybe:
            found = await find_trigger(client, step.state)
            if found is not None:
                if found.queue_url and found.queue_number is not None:
                    step = await self.follower.queued(step, found.queue_url, found.queue_number)
                if found.build is not None:
                    step = await self.follower.building(step, found.build.number, found.build.url)
                log.info("run %s: found the build it had triggered; following it", step.run_id)
                return
        if flag.cancelled:
            reason = "cancelled before Jenkins queued a build"
            await self.follower.finish(step, StepOutcome(StepStatus.CANCELLED, reason=reason))
            return
        job = await client.job(step.state.job)
        sending = parameters_to_send(
            step.state.params, [(p.name, p.default) for p in job.parameters], step.state.marker
        )
        state = step.state.but(
            match=sending.match,
            marked=sending.marked,
            bound=job.next_build_number or 1,
            since=wall(),
        )
        step = OpenStep(step.run_id, step.step_id, state)
        await self.follower.save(step.run_id, step.step_id, state)  # before the POST
        try:
            url = await client.trigger(state.job, sending.params)
        except JenkinsAlreadyQueued as exc:
            url = await self._ours_or_refuse(step, client, exc)
        number = queue_number_from_url(url)
        assert number is not None  # the client returns queue item URLs only
        await self.follower.queued(step, url, number)

    async def _ours_or_refuse(
        self, step: OpenStep, client: JenkinsClient, exc: JenkinsAlreadyQueued
    ) -> str:
        """Jenkins answered 303: the waiting item is ours only if it carries our marker."""
        if step.state.marked and exc.queue_number is not None:
            item = await client.queue_item(exc.queue_number)
            if is_ours_queued(item, step.state):
                return exc.queue_url
        raise _Refused(
            f"{exc} AnsFlow does not follow a build it cannot tell apart from its own: "
            f"declare a string parameter {MARKER_PARAM} on the job so each run's build "
            "is distinct, or wait for the queued build to start."
        )

    async def _cancel_queued_or_building(self, step_id: int) -> None:
        async with self.follower.locked(step_id) as step:
            if step is None or step.state.phase == TRIGGERING:
                return
            try:
                _, client = await self.clients.by_name(step.state.tool)
            except ToolMissing:
                return
            await request_stop(self.follower, step, client)
