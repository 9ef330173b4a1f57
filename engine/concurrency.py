"""Concurrency groups: runs whose group is the same run one at a time.

Every run of a pipeline with ``concurrency:`` goes pending → queued (its group
written on the run), then asks for the group: the group's row is handed to the
oldest queued run of the group by compare-and-set (``storage/groups.py``), so
runs start in creation order and two processes never both start one. The
holder moves queued → running; when it ends (any outcome) it frees the group
by compare-and-set and hands it on. A periodic :meth:`Concurrency.sweep` hands
on groups whose holder ended without doing so (a process that died), so
nothing stays queued.

``cancel_previous``: a new run first cancels the older active runs of its
group through the engine's cancel path (steps stopped, builds aborted), then
queues behind whatever is still ending.

The runner calls :meth:`may_proceed` before planning a pending or queued run
and :meth:`release` after a run ends; nothing else here touches the runner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.events import RunStatusChanged
from engine.permissions import Actor
from engine.pipelines.triggers import group_of
from engine.snapshots import run_snapshot
from engine.state import RUN_ACTIVE, RUN_TERMINAL, RunStatus
from engine.transitions import move_run
from storage import groups
from storage.models import Run, StepRun

if TYPE_CHECKING:
    from engine.runner import Engine

log = logging.getLogger(__name__)

ACTIVE = tuple(sorted(s.value for s in RUN_ACTIVE))
QUEUED = RunStatus.QUEUED.value
MAX_HANDOVER_ROUNDS = 20


class Concurrency:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def group_for(self, run: Run) -> str | None:
        spec = self.engine.pinned(run).concurrency
        if spec is None:
            return None
        return group_of(spec, dict(run.parameters))[:200]

    async def may_proceed(self, run: Run, steps: list[StepRun]) -> bool:
        """May the drive plan this run now? False keeps it queued (and queues a pending one)."""
        status = RunStatus(run.status)
        if status not in (RunStatus.PENDING, RunStatus.QUEUED):
            return True
        if run.cancel_requested_at is not None:
            return True  # a cancelled run ends without its group
        group = run.concurrency_group or self.group_for(run)
        if group is None:
            return True
        if status == RunStatus.QUEUED:
            return await groups.holder_of(group) == run.id
        spec = self.engine.pinned(run).concurrency
        if spec is not None and spec.mode == "cancel_previous":
            await self._cancel_older(run, group)
        await groups.ensure_group(group)
        async with self.engine._tx() as conn:
            queued = await move_run(run, RunStatus.QUEUED, conn, concurrency_group=group)
        if not queued:
            return False  # someone else moved it (a cancel); their drive carries on
        admitted = await self.hand_over(group)
        if admitted == run.id:
            return True
        if admitted is not None:
            self.engine.spawn(self.engine.drive(admitted))
        await self._announce_queued(run, steps, group, admitted)
        return False

    async def _announce_queued(
        self, run: Run, steps: list[StepRun], group: str, holder: int | None
    ) -> None:
        older = await groups.older_active(group, run.id, ACTIVE)
        ahead = older[-1] if older else holder
        if ahead is None:
            return
        async with self.engine._tx() as conn:
            still = await groups.mark_queued_behind(run.id, ahead, QUEUED, conn)
            if still:
                run.queued_behind = ahead
                run.version += 1  # as the row's (its trigger's) moved
                event = RunStatusChanged(run=run_snapshot(run, steps))
                await self.engine.bus.publish_in_tx(event, conn)
        if still:
            await self.engine.bus.publish(event)

    async def _cancel_older(self, run: Run, group: str) -> None:
        actor = Actor(user_id=f"newer run #{run.id}", trusted=True)
        for older in await groups.older_active(group, run.id, ACTIVE):
            try:
                await self.engine.cancel_run(older, actor)
            except UserError as exc:
                log.info("run %s: older run %s not cancelled: %s", run.id, older, exc)

    async def hand_over(self, group: str) -> int | None:
        """The group's holder after handing a free group to its oldest queued run."""
        for _ in range(MAX_HANDOVER_ROUNDS):
            holder = await groups.holder_of(group)
            if holder is not None:
                status = await groups.run_status(holder)
                if status is not None and RunStatus(status) not in RUN_TERMINAL:
                    return holder
                await groups.free(group, holder)  # it ended without freeing (its process died)
                continue
            candidate = await groups.oldest_queued(group, QUEUED)
            if candidate is None:
                return None
            if await groups.claim(group, candidate):
                return candidate
        log.warning("concurrency group %r: hand-over did not settle", group)
        return None

    async def release(self, run: Run) -> None:
        """After ``run`` ended: free its group and start the next queued run."""
        group = run.concurrency_group
        if group is None:
            return
        if not await groups.free(group, run.id):
            return  # it did not hold the group (a queued run that was cancelled)
        admitted = await self.hand_over(group)
        if admitted is not None and admitted != run.id:
            self.engine.spawn(self.engine.drive(admitted))

    async def sweep(self) -> int:
        """Hand on every group with queued runs whose holder ended. Returns runs moved on."""
        moved = 0
        for group in await groups.groups_with(QUEUED):
            admitted = await self.hand_over(group)
            if admitted is not None and await groups.run_status(admitted) == QUEUED:
                self.engine.spawn(self.engine.drive(admitted))
                moved += 1
        return moved
