"""Moving Jenkins steps on: the one place that writes their state and ends them.

The executor (trigger, cancel), the poller and the webhook all go through a
:class:`Follower`, so a step's state is changed under one lock per step and
ended through the engine's compare-and-set (whoever is second loses quietly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from engine.executors.base import StepOutcome
from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import JenkinsError
from engine.jenkins.models import BuildInfo
from engine.jenkins.phases import BUILDING, QUEUED, FollowState, build_outcome
from engine.masking import Masker
from engine.runner import Engine
from engine.state import StepStatus
from storage.models import StepRun

log = logging.getLogger(__name__)

CONSOLE_LINES = 40


@dataclass(frozen=True)
class OpenStep:
    run_id: int
    step_id: int
    state: FollowState
    reason: str | None = None  # while running: a note such as "Jenkins … unreachable"


class Follower:
    def __init__(self, engine: Engine, masker: Masker) -> None:
        self.engine = engine
        self.masker = masker
        self._locks: dict[int, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def locked(self, step_id: int) -> AsyncIterator[OpenStep | None]:
        """Hold the step's lock; yields its fresh state, or None once it is no longer running."""
        lock = self._locks.setdefault(step_id, asyncio.Lock())
        async with lock:
            yield await self.read(step_id)

    async def read(self, step_id: int) -> OpenStep | None:
        row = await StepRun.filter(id=step_id, status=StepStatus.RUNNING.value).first()
        if row is None:
            return None
        state = FollowState.from_json(row.external_state)
        return None if state is None else OpenStep(row.run_id, row.id, state, row.reason)

    async def open_steps(self, tool: str | None = None) -> list[OpenStep]:
        """Running Jenkins steps (of one tool), oldest first."""
        rows = await StepRun.filter(kind="jenkins", status=StepStatus.RUNNING.value).order_by("id")
        found = []
        for row in rows:
            state = FollowState.from_json(row.external_state)
            if state is not None and (tool is None or state.tool == tool):
                found.append(OpenStep(row.run_id, row.id, state, row.reason))
        return found

    async def save(self, run_id: int, step_id: int, state: FollowState, **fields: Any) -> None:
        await self.engine.update_step(run_id, step_id, external_state=state.to_json(), **fields)

    async def note(self, step_id: int, reason: str | None) -> None:
        """Set (or, with None, clear) a running step's reason; announced when it changes."""
        async with self.locked(step_id) as fresh:
            if fresh is None or fresh.reason == reason:
                return
            shown = self.masker(reason) if reason else None
            await self.engine.update_step(fresh.run_id, step_id, reason=shown)
            if fresh.reason is None or reason is None:
                log.info("run %s step %s: %s", fresh.run_id, step_id, shown or "reason cleared")

    async def queued(self, step: OpenStep, queue_url: str, number: int) -> OpenStep:
        state = step.state.but(phase=QUEUED, queue=number)
        await self.save(step.run_id, step.step_id, state, external_id=queue_url)
        return OpenStep(step.run_id, step.step_id, state, step.reason)

    async def building(self, step: OpenStep, number: int, url: str) -> OpenStep:
        """Store the build number and URL (the engine announces the new URL)."""
        if step.state.build == number:
            return step
        state = step.state.but(phase=BUILDING, build=number)
        await self.save(step.run_id, step.step_id, state, external_url=url)
        return OpenStep(step.run_id, step.step_id, state, step.reason)

    async def settle(self, step: OpenStep, client: JenkinsClient, build: BuildInfo) -> bool:
        """End the step from its finished build; the console's last lines go with a failure."""
        tail: str | None = None
        if build.result != "SUCCESS":
            try:
                tail = self.masker(
                    await client.console_tail(step.state.job, build.number, CONSOLE_LINES)
                )
            except JenkinsError as exc:
                tail = f"[console not available: {self.masker(str(exc))}]"
        if step.state.build != build.number:
            step = await self.building(step, build.number, build.url)
        cancelling = step.state.stop_requested_at is not None
        return await self.finish(step, build_outcome(build, tail, cancelling))

    async def finish(self, step: OpenStep, outcome: StepOutcome) -> bool:
        if outcome.reason is not None:
            outcome = StepOutcome(
                outcome.status,
                outcome.exit_code,
                self.masker(outcome.reason),
                outcome.log,
                outcome.log_dropped,
                outcome.external_url,
            )
        else:
            # An ending without a reason drops a note left while it ran ("unreachable").
            await StepRun.filter(id=step.step_id, status=StepStatus.RUNNING.value).update(
                reason=None
            )
        won = await self.engine.finish_step(step.run_id, step.step_id, outcome)
        if won:
            self._locks.pop(step.step_id, None)
            log.info(
                "run %s step %s: %s%s",
                step.run_id,
                step.step_id,
                outcome.status.value,
                f" ({outcome.reason})" if outcome.reason else "",
            )
        return won

    async def fail(self, step: OpenStep, reason: str) -> bool:
        return await self.finish(step, StepOutcome(StepStatus.FAILED, reason=reason))


def wall() -> float:
    return time.time()
