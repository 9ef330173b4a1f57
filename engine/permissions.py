"""Who may run, cancel and approve: one set of rules for Slack and the REST API.

A change violates ARCHITECTURE.md decision 8 when ``bot/`` or ``api/`` decides
a permission without calling these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.pipelines import ApprovalSpec, ParallelSpec, Pipeline


@dataclass(frozen=True)
class Actor:
    """Who asks: a Slack user id (also a JWT's ``sub``), and where they ask from."""

    user_id: str
    channel_id: str | None = None
    # The terminal's operator: already has the service's machine, so every pipeline.
    trusted: bool = False


def run_refusal(pipeline: Pipeline, actor: Actor, admins: frozenset[str]) -> str | None:
    """Why ``actor`` may not run ``pipeline``, or None when they may."""
    if actor.trusted or actor.user_id in admins:
        return None
    if pipeline.allowed_users is not None and actor.user_id not in pipeline.allowed_users:
        return (
            f"You are not allowed to run `{pipeline.name}`. "
            "Ask one of its allowed users or an admin."
        )
    if (
        pipeline.allowed_channels is not None
        and actor.channel_id is not None
        and actor.channel_id not in pipeline.allowed_channels
    ):
        where = ", ".join(f"<#{c}>" for c in pipeline.allowed_channels)
        return f"`{pipeline.name}` may only be run from {where}."
    return None


def may_run(pipeline: Pipeline, actor: Actor, admins: frozenset[str]) -> bool:
    return run_refusal(pipeline, actor, admins) is None


def approvers_of(pipeline: Pipeline) -> frozenset[str]:
    users: set[str] = set()
    for stage in pipeline.steps:
        leaves = stage.parallel if isinstance(stage, ParallelSpec) else [stage]
        for leaf in leaves:
            if isinstance(leaf, ApprovalSpec):
                users.update(leaf.approval.approvers)
    return frozenset(users)


def cancel_refusal(
    pipeline: Pipeline, started_by: str, actor: Actor, admins: frozenset[str]
) -> str | None:
    """Why ``actor`` may not cancel a run of ``pipeline`` started by ``started_by``."""
    if actor.trusted or actor.user_id in admins or actor.user_id == started_by:
        return None
    if actor.user_id in approvers_of(pipeline):
        return None
    return "Only the person who started this run, its approvers or an admin may cancel it."


def approval_refusal(spec: ApprovalSpec, started_by: str, actor: Actor) -> str | None:
    """Why ``actor``'s decision on this approval does not count."""
    if actor.user_id not in spec.approval.approvers:
        who = ", ".join(f"<@{u}>" for u in spec.approval.approvers)
        return f"Only {who} can decide this approval."
    if actor.user_id == started_by and not spec.approval.allow_self_approval:
        return "You started this run, so you cannot approve it yourself."
    return None


def may_view(pipeline: Pipeline, started_by: str, actor: Actor, admins: frozenset[str]) -> bool:
    """May ``actor`` see a run of ``pipeline`` started by ``started_by`` (API, WebSocket)?

    Admins see every run; others the runs they started, the runs of pipelines
    they may run (wherever from) and those they approve.
    """
    if actor.trusted or actor.user_id in admins or actor.user_id == started_by:
        return True
    if actor.user_id in approvers_of(pipeline):
        return True
    return run_refusal(pipeline, Actor(user_id=actor.user_id), admins) is None
