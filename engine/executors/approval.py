"""``approval`` steps: the run waits until enough approvers decide, or the gate times out.

The gate is a stored row (``Approval``) with its expiry, so a restart keeps
it: recovery re-arms the timeout from ``expires_at``, and buttons posted
before the restart still decide it (they carry the run and approval ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from engine.approvals import Outcome, settle
from engine.events import ApprovalRequested, EventBus
from engine.executors.base import StepContext, StepOutcome
from engine.pipelines import ApprovalSpec
from engine.snapshots import run_snapshot, step_snapshot
from engine.state import StepStatus
from storage import runs as store
from storage.models import Approval

log = logging.getLogger(__name__)

TIMED_OUT = "approval timed out"


class ApprovalExecutor:
    kind = "approval"
    started_status = StepStatus.WAITING_APPROVAL

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._timers: dict[int, asyncio.Task[None]] = {}

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

    def _arm(self, ctx: StepContext, approval: Approval) -> None:
        if approval.expires_at is None:
            return
        self._disarm(ctx.step_id)
        delay = max(0.0, (approval.expires_at - store.now()).total_seconds())
        self._timers[ctx.step_id] = asyncio.create_task(self._expire(ctx, approval, delay))

    def _disarm(self, step_id: int) -> None:
        timer = self._timers.pop(step_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _expire(self, ctx: StepContext, approval: Approval, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(ctx.step_id, None)
        async with in_transaction() as conn:
            won = await settle(approval, Outcome.TIMED_OUT, conn)
        if won:
            log.info("run %s: approval %s timed out", ctx.run_id, approval.id)
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason=TIMED_OUT))

    async def shutdown(self) -> None:
        for timer in list(self._timers.values()):
            timer.cancel()
        for timer in list(self._timers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        self._timers.clear()
