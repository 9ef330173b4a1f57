"""``approval`` steps: the run waits until enough approvers decide, or the gate times out.

The gate is a stored row (``Approval``) with its expiry, so a restart keeps
it: recovery re-arms the timeout from ``expires_at``, and buttons posted
before the restart still decide it (they carry the run and approval ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from engine.approvals import Outcome, settle
from engine.events import ApprovalRequested, Event, EventBus, RunFinished, StepFinished
from engine.executors.base import StepContext, StepOutcome
from engine.pipelines import ApprovalSpec
from engine.snapshots import run_snapshot, step_snapshot
from engine.state import StepStatus
from storage import runs as store
from storage.models import Approval

log = logging.getLogger(__name__)

TIMED_OUT = "approval timed out"

Finish = Callable[[StepOutcome], Awaitable[bool]]


class ApprovalExecutor:
    """Opens gates and times them out.

    A gate with a timeout has one timer handle, keyed by its step: it holds
    ids and the step's ``finish``, not the run, so a waiting run costs little.
    The timer goes as soon as the step ends, however it ends (decided,
    cancelled, timed out): an ended run leaves nothing armed behind.
    """

    kind = "approval"
    started_status = StepStatus.WAITING_APPROVAL

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._expiring: set[asyncio.Task[None]] = set()
        bus.subscribe(self._on_event)

    @property
    def armed(self) -> int:
        """How many gates have their timeout armed in this process."""
        return len(self._timers)

    async def start(self, ctx: StepContext) -> None:
        spec = ctx.spec
        assert isinstance(spec, ApprovalSpec)
        timeout = spec.approval.timeout or spec.timeout
        expires = store.now() + timedelta(seconds=timeout) if timeout else None
        run = await store.read_run(ctx.run_id)
        assert run is not None
        async with in_transaction() as conn:
            try:
                approval = await Approval.create(
                    step_id=ctx.step_id,
                    run_id=ctx.run_id,
                    approvers=list(spec.approval.approvers),
                    required=spec.approval.required,
                    allow_self_approval=spec.approval.allow_self_approval,
                    requested_by=ctx.triggered_by,
                    expires_at=expires,
                    using_db=conn,
                )
            except IntegrityError:
                return  # already opened (a retried start): nothing to announce twice
            steps = await store.read_steps(ctx.run_id, conn)
            step = next(s for s in steps if s.id == ctx.step_id)
            event = ApprovalRequested(
                run=run_snapshot(run, steps),
                step=step_snapshot(step),
                approval_id=approval.id,
            )
            await self._bus.publish_in_tx(event, conn)
        await self._bus.publish(event)
        self._arm(ctx, approval)

    async def recover(self, ctx: StepContext) -> None:
        approval = await Approval.filter(step_id=ctx.step_id).first()
        if approval is None:
            await self.start(ctx)  # the process died between the step's start and the gate
            return
        if approval.outcome == Outcome.APPROVED:
            await ctx.finish(StepOutcome(StepStatus.SUCCESS))
        elif approval.outcome == Outcome.REJECTED:
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason="rejected"))
        elif approval.outcome == Outcome.TIMED_OUT:
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason=TIMED_OUT))
        else:
            self._arm(ctx, approval)

    async def cancel(self, ctx: StepContext) -> None:
        self._disarm(ctx.step_id)
        await ctx.finish(StepOutcome(StepStatus.CANCELLED, reason="cancelled"))

    def _on_event(self, event: Event) -> None:
        """After commit: a gate's step that ended needs its timer no more."""
        if not self._timers:
            return
        if isinstance(event, StepFinished) and event.step is not None:
            self._disarm(event.step.id)
        elif isinstance(event, RunFinished):
            for step in event.run.steps:
                self._disarm(step.id)

    def _arm(self, ctx: StepContext, approval: Approval) -> None:
        if approval.expires_at is None:
            return
        self._disarm(ctx.step_id)
        delay = max(0.0, (approval.expires_at - store.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[ctx.step_id] = loop.call_later(
            delay, self._fire, ctx.run_id, ctx.step_id, approval.id, ctx.finish
        )

    def _disarm(self, step_id: int) -> None:
        timer = self._timers.pop(step_id, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, run_id: int, step_id: int, approval_id: int, finish: Finish) -> None:
        self._timers.pop(step_id, None)
        task = asyncio.create_task(self._expire(run_id, approval_id, finish))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, run_id: int, approval_id: int, finish: Finish) -> None:
        try:
            async with in_transaction() as conn:
                approval = await Approval.filter(id=approval_id).using_db(conn).first()
                won = approval is not None and await settle(approval, Outcome.TIMED_OUT, conn)
            if won:
                log.info("run %s: approval %s timed out", run_id, approval_id)
                await finish(StepOutcome(StepStatus.FAILED, reason=TIMED_OUT))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: could not time out approval %s", run_id, approval_id)

    async def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._expiring):
            task.cancel()
        for task in list(self._expiring):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._expiring.clear()
