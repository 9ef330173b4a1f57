"""Cancelling a Jenkins step: remove its queue item, or stop its build.

A removed queue item ends the step ``cancelled`` at once. A stopped build ends
it once Jenkins reports ABORTED (the poller or the webhook sees it), or, if
Jenkins never confirms, after ``confirm_within`` seconds with a note saying so.
A stop that could not be sent (Jenkins down) is sent again by the poller.
"""

from __future__ import annotations

import logging

from engine.executors.base import StepOutcome
from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import JenkinsError
from engine.jenkins.follow import Follower, OpenStep, wall
from engine.jenkins.phases import BUILDING, QUEUED
from engine.state import StepStatus

log = logging.getLogger(__name__)


async def request_stop(follower: Follower, step: OpenStep, client: JenkinsClient) -> None:
    """Ask Jenkins to drop the step's work; call with the step's lock held."""
    state = step.state.but(stop_requested_at=step.state.stop_requested_at or wall())
    step = OpenStep(step.run_id, step.step_id, state)
    try:
        if state.phase == QUEUED and state.queue is not None:
            if await client.cancel_queue_item(state.queue):
                reason = f"cancelled; Jenkins queue item {state.queue} was removed"
                await follower.finish(step, StepOutcome(StepStatus.CANCELLED, reason=reason))
                return
            item = await client.queue_item(state.queue)
            if item.cancelled:
                await follower.finish(step, StepOutcome(StepStatus.CANCELLED, reason="cancelled"))
                return
            if item.build_number is None or item.build_url is None:
                await follower.save(step.run_id, step.step_id, state)  # try again next poll
                return
            step = await follower.building(step, item.build_number, item.build_url)
            state = step.state
        if state.phase == BUILDING and state.build is not None:
            await client.stop(state.job, state.build)
            state = state.but(stop_sent=True)
    except JenkinsError as exc:
        log.warning("run %s: could not cancel in Jenkins yet: %s", step.run_id, exc)
    await follower.save(step.run_id, step.step_id, state)


async def end_unconfirmed(follower: Follower, step: OpenStep, confirm_within: float) -> bool:
    """End a step whose cancel Jenkins has not confirmed within the bound."""
    asked = step.state.stop_requested_at
    if asked is None or wall() - asked < confirm_within:
        return False
    what = f"build #{step.state.build}" if step.state.build is not None else "queue item"
    reason = (
        f"cancelled; Jenkins did not confirm that {what} of '{step.state.job}' "
        f"was aborted within {confirm_within:g} s"
    )
    return await follower.finish(step, StepOutcome(StepStatus.CANCELLED, reason=reason))
