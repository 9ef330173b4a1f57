"""Approval gates in the run's thread: the request with its buttons, then what was decided.

Rows follow ``bot/outbox.py``: the request is a thread reply keyed
``gate:{approval}``; later states rewrite it while it is unsent, otherwise
they are ``reply_update`` rows (``chat.update`` of the posted request, keyed
``gate-update:{approval}`` so the latest state wins).
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.approval_views import Decision, GateView, approval_message
from bot.outbox import REPLY_UPDATE, add_reply, rewrite_unsent
from engine.events import ApprovalDecided, ApprovalRequested, Event, RunSnapshot, StepFinished
from engine.state import StepStatus
from storage.models import Approval, ApprovalDecision, OutboxMessage


def gate_key(approval_id: int) -> str:
    return f"gate:{approval_id}"


def gate_update_key(approval_id: int) -> str:
    return f"gate-update:{approval_id}"


async def gate_view(
    approval: Approval,
    run: RunSnapshot,
    step_name: str,
    conn: BaseDBAsyncClient,
    cancelled: bool = False,
) -> GateView:
    rows = await ApprovalDecision.filter(approval_id=approval.id).using_db(conn).order_by("id")
    outcome = approval.outcome or ("cancelled" if cancelled else None)
    return GateView(
        run_id=run.id,
        approval_id=approval.id,
        pipeline=run.pipeline,
        step=step_name,
        parameters=run.parameters,
        requested_by=approval.requested_by or run.triggered_by,
        approvers=tuple(approval.approvers),
        required=approval.required,
        outcome=outcome,
        decided_at=approval.decided_at,
        expires_at=approval.expires_at,
        decisions=tuple(Decision(d.user_id, d.decision, d.comment, d.decided_at) for d in rows),
    )


async def write_approval_outbox(event: Event, conn: BaseDBAsyncClient) -> None:
    run = event.run
    step = getattr(event, "step", None)
    if not run.channel_id or step is None:
        return
    if isinstance(event, ApprovalRequested):
        approval = await Approval.filter(id=event.approval_id).using_db(conn).first()
        if approval is not None:
            message = approval_message(await gate_view(approval, run, step.name, conn))
            await add_reply(conn, run, message, key=gate_key(approval.id), step=step)
    elif isinstance(event, ApprovalDecided):
        approval = await Approval.filter(id=event.approval_id).using_db(conn).first()
        if approval is not None:
            await _show(conn, run, approval, await gate_view(approval, run, step.name, conn))
    elif isinstance(event, StepFinished) and step.kind == "approval":
        approval = await Approval.filter(step_id=step.id).using_db(conn).first()
        if approval is not None:
            cancelled = step.status == StepStatus.CANCELLED
            view = await gate_view(approval, run, step.name, conn, cancelled=cancelled)
            await _show(conn, run, approval, view)


async def _show(
    conn: BaseDBAsyncClient, run: RunSnapshot, approval: Approval, view: GateView
) -> None:
    payload: dict[str, Any] = approval_message(view).as_args()
    if await rewrite_unsent(conn, gate_key(approval.id), payload):
        return
    update_key = gate_update_key(approval.id)
    if await rewrite_unsent(conn, update_key, {**payload, "target_key": gate_key(approval.id)}):
        return
    await OutboxMessage.create(
        channel=run.channel_id,
        kind=REPLY_UPDATE,
        run_id=run.id,
        coalesce_key=update_key,
        payload={**payload, "target_key": gate_key(approval.id)},
        using_db=conn,
    )
