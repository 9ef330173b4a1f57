"""Block Kit for approval gates: the request with its buttons, and what was decided.

Pure: built from a :class:`GateView`, never from a Bolt payload or a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot import messages as say
from bot.views import (
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    Block,
    Message,
    context,
    escape,
    parameters_text,
    section,
)


@dataclass(frozen=True)
class Decision:
    user_id: str
    decision: str  # "approve" | "reject"
    comment: str | None
    decided_at: datetime | None


@dataclass(frozen=True)
class GateView:
    run_id: int
    approval_id: int
    pipeline: str
    step: str
    parameters: dict[str, str]
    requested_by: str
    approvers: tuple[str, ...]
    required: int
    outcome: str | None  # None while open; approved | rejected | timed_out | cancelled
    decided_at: datetime | None
    expires_at: datetime | None
    decisions: tuple[Decision, ...] = ()


def button_value(run_id: int, approval_id: int) -> str:
    return f"{run_id}:{approval_id}"


def parse_button_value(value: str) -> tuple[int, int] | None:
    run, _, approval = value.partition(":")
    if not (run.isdigit() and approval.isdigit()) or len(run) > 12 or len(approval) > 12:
        return None
    return int(run), int(approval)


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M UTC") if moment else ""


def _buttons(gate: GateView) -> Block:
    return decision_buttons(gate.run_id, gate.approval_id, f"approval:{gate.approval_id}")


def decision_buttons(run_id: int, approval_id: int, block_id: str) -> Block:
    """Approve and Reject for one gate (in its thread reply, or on the Home tab)."""
    value = button_value(run_id, approval_id)
    return {
        "type": "actions",
        "block_id": block_id,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "value": value,
                "style": "primary",
                "text": {"type": "plain_text", "text": say.APPROVE_BUTTON},
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION_ID,
                "value": value,
                "style": "danger",
                "text": {"type": "plain_text", "text": say.REJECT_BUTTON},
            },
        ],
    }


def _decision_lines(gate: GateView) -> list[str]:
    lines = []
    for d in gate.decisions:
        verb = "Approved" if d.decision == "approve" else "Rejected"
        note = f": _{escape(d.comment)}_" if d.comment else ""
        lines.append(f"{verb} by {say.user(d.user_id)} at {_clock(d.decided_at)}{note}")
    return lines


def _outcome_line(gate: GateView) -> str:
    if gate.outcome == "timed_out":
        return say.approval_timed_out()
    if gate.outcome == "cancelled":
        return say.approval_cancelled()
    wanted = "reject" if gate.outcome == "rejected" else "approve"
    deciders = [d for d in gate.decisions if d.decision == wanted]
    who = ", ".join(say.user(d.user_id) for d in deciders) or "nobody"
    verb = "Rejected" if wanted == "reject" else "Approved"
    return f"{'❌' if wanted == 'reject' else '✅'} {verb} by {who} at {_clock(gate.decided_at)}"


def approval_message(gate: GateView) -> Message:
    """The thread reply of a gate: open (with buttons) or decided (without)."""
    approvers = ", ".join(say.user(u) for u in gate.approvers)
    open_with_expiry = gate.expires_at is not None and gate.outcome is None
    blocks: list[Block] = [
        section(
            say.approval_request(
                approvers, escape(gate.step), escape(gate.pipeline), gate.run_id, gate.required
            )
        ),
        context(
            f"{say.asked_by(gate.requested_by)} · {parameters_text(gate.parameters)}"
            + (f" · expires {_clock(gate.expires_at)}" if open_with_expiry else "")
        ),
    ]
    lines = _decision_lines(gate)
    if gate.outcome is None:
        if lines:
            blocks.append(context("\n".join(lines) + f" ({say.approvals_so_far(gate)})"))
        blocks.append(_buttons(gate))
        text = f"Approval needed: {gate.pipeline} #{gate.run_id} {gate.step}"
    else:
        blocks.append(section(_outcome_line(gate)))
        comments = [line for line in lines if ": _" in line]
        if comments:
            blocks.append(context("\n".join(comments)))
        text = f"{gate.pipeline} #{gate.run_id} {gate.step}: {_outcome_line(gate)}"
    return Message(text, blocks)
