"""The Jenkins Notification plugin's webhook: a faster path to the poller's transitions.

The payload (``{name, url, build{full_url, number, queue_id, phase, status,
parameters}}``) is only a hint: it names a build; the build is then read from
Jenkins (one request) and the step moved by what Jenkins says, so a forged or
stale notification cannot end a step wrongly. Builds no step follows are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.jenkins.errors import JenkinsError
from engine.jenkins.follow import Follower, OpenStep
from engine.jenkins.models import job_name_from_url
from engine.jenkins.phases import TRIGGERING
from engine.jenkins.tools import ToolClients, ToolMissing

log = logging.getLogger(__name__)

PHASES = frozenset({"QUEUED", "STARTED", "COMPLETED", "FINALIZED"})


@dataclass(frozen=True)
class Notification:
    job: str
    number: int
    queue_id: int | None
    phase: str


def parse_notification(data: Any) -> Notification | None:
    """The build a notification names; None when the payload is not one."""
    if not isinstance(data, Mapping):
        return None
    build = data.get("build")
    if not isinstance(build, Mapping):
        return None
    url = build.get("full_url") or build.get("url") or data.get("url")
    job = job_name_from_url(str(url)) if url else None
    if job is None and isinstance(data.get("url"), str):
        job = job_name_from_url("/" + data["url"])
    try:
        number = int(build["number"])
        queue_id = int(build["queue_id"]) if build.get("queue_id") is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    phase = str(build.get("phase", "")).upper()
    if job is None or phase not in PHASES:
        return None
    return Notification(job, number, queue_id, phase)


def matching_step(steps: list[OpenStep], note: Notification) -> OpenStep | None:
    for step in steps:
        state = step.state
        if state.phase == TRIGGERING or state.job != note.job:
            continue
        if state.build == note.number:
            return step
        if state.build is None and note.queue_id is not None and state.queue == note.queue_id:
            return step
    return None


async def apply_notification(follower: Follower, clients: ToolClients, note: Notification) -> bool:
    """Move the step following this build now; False when no step follows it."""
    step = matching_step(await follower.open_steps(), note)
    if step is None:
        return False
    try:
        _, client = await clients.by_name(step.state.tool)
        build = await client.build(note.job, note.number)
    except (JenkinsError, ToolMissing) as exc:
        log.warning("Jenkins notification for %s #%s: %s", note.job, note.number, exc)
        return True  # ours, but the poller will move it
    if step.state.build is None and build.queue_id != step.state.queue:
        return False
    async with follower.locked(step.step_id) as fresh:
        if fresh is None:
            return True
        fresh = await follower.building(fresh, build.number, build.url)
        if not build.building:
            await follower.settle(fresh, client, build)
    return True
