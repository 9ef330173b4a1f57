"""Restart-safety: where did a trigger that may have reached Jenkins go?

Used on recovery (a step left in ``triggering``) and before re-sending a
trigger whose answer was lost. Two requests at most: the queue, then the job's
recent builds (in that order, so an item leaving the queue in between is seen
as a build). See ARCHITECTURE.md decision 10.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.jenkins.client import JenkinsClient
from engine.jenkins.models import BuildInfo, QueueItem
from engine.jenkins.phases import MARKER_PARAM, FollowState, is_ours_queued, our_build

RECENT_BUILDS = 50


@dataclass(frozen=True)
class Found:
    queue_url: str | None
    queue_number: int | None
    build: BuildInfo | None = None


def queue_url(base: str, number: int) -> str:
    return f"{base.rstrip('/')}/queue/item/{number}/"


async def find_trigger(client: JenkinsClient, state: FollowState) -> Found | None:
    """The queue item or build our trigger produced, or None if Jenkins never got it.

    ``state.bound`` unset means the POST was never sent: nothing to look for.
    """
    if state.bound is None:
        return None
    wanted = {MARKER_PARAM: state.marker} if state.marked else state.match
    item: QueueItem | None = await client.find_queued(state.job, wanted)
    if item is not None and is_ours_queued(item, state):
        return Found(queue_url(client.url, item.number), item.number)
    build = our_build(await client.recent_builds(state.job, RECENT_BUILDS), state)
    if build is None:
        return None
    if build.queue_id is None:
        return Found(None, None, build)
    return Found(queue_url(client.url, build.queue_id), build.queue_id, build)
