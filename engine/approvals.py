"""Deciding approval gates: one implementation for the Slack buttons and the REST API.

Race-free by compare-and-set: each person's decision is one row (unique per
approval and user), and the gate's outcome moves from empty to approved,
rejected or timed out exactly once (``UPDATE … WHERE outcome IS NULL``). Only
the process that wins that update ends the step, so two clicks at once, a
click after the decision, or a timeout racing a click decide once and the
next step runs once. A change violates this when it ends an approval step
without winning the outcome update first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from engine.errors import Conflict, NotAllowed, RunNotFound
from engine.events import ApprovalDecided
from engine.executors.base import StepOutcome
from engine.permissions import Actor, approval_refusal
from engine.pipelines import ApprovalSpec
from engine.snapshots import run_snapshot, step_snapshot
from engine.state import RUN_TERMINAL, RunStatus, StepStatus
from storage import runs as store
from storage.models import Approval, ApprovalDecision, StepRun

if TYPE_CHECKING:
    from engine.runner import Engine

APPROVE = "approve"
REJECT = "reject"
MAX_COMMENT = 2000


class _AlreadyDecided(Exception):
    pass


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class DecisionResult:
    """What happened to one person's decision."""

    approval_id: int
    decision: str
    # The gate's outcome once decided (by this decision or an earlier one).
    outcome: Outcome | None
    # True when this decision was recorded; False when it changed nothing.
    recorded: bool
    approvals: int
    required: int


def describe_decided(approval: Approval, decisions: list[ApprovalDecision]) -> str:
    """ "Approved by @U1 at 14:03" — what a decided gate says about itself."""
    if approval.outcome == Outcome.TIMED_OUT:
        return "Approval timed out"
    wanted = REJECT if approval.outcome == Outcome.REJECTED else APPROVE
    deciders = [d for d in decisions if d.decision == wanted]
    who = ", ".join(f"@{d.user_id}" for d in deciders) or "nobody"
    verb = "Rejected" if wanted == REJECT else "Approved"
    when = _clock(approval.decided_at)
    return f"{verb} by {who} at {when}" if when else f"{verb} by {who}"


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M UTC") if moment is not None else ""


async def open_approval(run_id: int, approval_id: int | None) -> tuple[Approval, StepRun]:
    """The approval a click or request is about: the given one, or the run's open gate."""
    query = Approval.filter(run_id=run_id)
    if approval_id is not None:
        query = query.filter(id=approval_id)
    else:
        query = query.filter(outcome__isnull=True)
    approval = await query.order_by("-id").first()
    if approval is None:
        latest = await Approval.filter(run_id=run_id).order_by("-id").first()
        if latest is None or approval_id is not None:
            raise Conflict(f"Run {run_id} is not waiting for an approval.")
        approval = latest
    step = await StepRun.get(id=approval.step_id)
    return approval, step


async def decide(
    engine: Engine,
    run_id: int,
    actor: Actor,
    decision: str,
    comment: str | None = None,
    approval_id: int | None = None,
) -> DecisionResult:
    """Record ``actor``'s decision and, when it settles the gate, end the step.

    Raises ``NotAllowed`` (not an approver, or the starter without
    ``allow_self_approval``), ``Conflict`` (already decided, run ended),
    ``RunNotFound``. Nothing changes when it raises.
    """
    if decision not in (APPROVE, REJECT):
        raise ValueError(f"decision must be {APPROVE!r} or {REJECT!r}")
    run = await store.read_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    approval, step = await open_approval(run_id, approval_id)
    spec = _spec_of(engine, run, step)
    refusal = approval_refusal(spec, run.triggered_by, actor)
    if refusal:
        raise NotAllowed(refusal)
    if approval.outcome is not None or RunStatus(run.status) in RUN_TERMINAL:
        decisions = list(await ApprovalDecision.filter(approval_id=approval.id))
        state = describe_decided(approval, decisions) if approval.outcome else f"run {run.status}"
        raise Conflict(f"This approval is already decided: {state}.")
    text = (comment or "").strip()[:MAX_COMMENT] or None
    return await _record(engine, run, step, approval, actor, decision, text)


def _spec_of(engine: Engine, run: Any, step: StepRun) -> ApprovalSpec:
    pipeline = engine.pinned(run)
    spec = next(s for p, s in pipeline.leaves() if p == step.path)
    assert isinstance(spec, ApprovalSpec)
    return spec


async def _record(
    engine: Engine,
    run: Any,
    step: StepRun,
    approval: Approval,
    actor: Actor,
    decision: str,
    comment: str | None,
) -> DecisionResult:
    outcome: Outcome | None = None
    try:
        async with in_transaction() as conn:
            already = (
                await ApprovalDecision.filter(approval_id=approval.id, user_id=actor.user_id)
                .using_db(conn)
                .exists()
            )
            if already:
                raise _AlreadyDecided
            # A concurrent duplicate fails on the unique key and rolls back whole.
            await ApprovalDecision.create(
                approval_id=approval.id,
                user_id=actor.user_id,
                decision=decision,
                comment=comment,
                using_db=conn,
            )
            approvals = (
                await ApprovalDecision.filter(approval_id=approval.id, decision=APPROVE)
                .using_db(conn)
                .count()
            )
            if decision == REJECT:
                outcome = Outcome.REJECTED
            elif approvals >= approval.required:
                outcome = Outcome.APPROVED
            if outcome is not None and not await settle(approval, outcome, conn):
                outcome = None  # someone else settled it first
            steps = await store.read_steps(run.id, conn)
            event = ApprovalDecided(
                run=run_snapshot(run, steps),
                step=step_snapshot(step),
                approval_id=approval.id,
                user_id=actor.user_id,
                decision=decision,
                comment=comment,
                final=outcome is not None,
            )
            await engine.bus.publish_in_tx(event, conn)
        recorded = True
    except (IntegrityError, _AlreadyDecided):
        recorded = False
    if not recorded:
        fresh = await Approval.get(id=approval.id)
        raise Conflict(
            "You have already decided on this approval."
            if fresh.outcome is None
            else f"This approval is already decided: {fresh.outcome}."
        )
    await engine.bus.publish(event)
    if outcome == Outcome.APPROVED:
        await engine.finish_step(run.id, step.id, StepOutcome(StepStatus.SUCCESS))
    elif outcome == Outcome.REJECTED:
        reason = f"rejected by @{actor.user_id}" + (f": {comment}" if comment else "")
        await engine.finish_step(run.id, step.id, StepOutcome(StepStatus.FAILED, reason=reason))
    return DecisionResult(approval.id, decision, outcome, recorded, approvals, approval.required)


async def settle(approval: Approval, outcome: Outcome, conn: Any) -> bool:
    """Compare-and-set the gate's outcome; True for the one caller that wins."""
    stamp = store.now()
    won = (
        await Approval.filter(id=approval.id, outcome__isnull=True)
        .using_db(conn)
        .update(outcome=outcome.value, decided_at=stamp)
    )
    if won:
        approval.outcome = outcome.value
        approval.decided_at = stamp
    return bool(won)
