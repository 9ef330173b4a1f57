"""Run and step statuses, and which transitions between them are allowed.

Deciding is pure: :func:`decide` returns a verdict instead of raising. The
database applies an accepted transition with a compare-and-set, so a change
violates this module when it writes a status without going through
``ALLOWED`` (for example, setting ``success`` on a step that was ``pending``).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    # Waiting for its concurrency group to free (engine/concurrency.py).
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


_STEP_STATUS_BY_TEXT: dict[str, StepStatus] = {status.value: status for status in StepStatus}


def step_status(text: str) -> StepStatus:
    """The status stored as ``text``: ``StepStatus(text)``, as one dict lookup.

    The plan and every snapshot look up each step's status, several times per
    step boundary; the enum's own lookup costs a microsecond each.
    """
    found = _STEP_STATUS_BY_TEXT.get(text)
    if found is None:
        raise ValueError(f"{text!r} is not a valid StepStatus")
    return found


# A run is terminal once nothing about it can change again.
RUN_TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED}
)
# Active: the engine owes the run more work (recovery picks these up).
RUN_ACTIVE: frozenset[RunStatus] = frozenset(
    {RunStatus.PENDING, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL}
)

STEP_TERMINAL: frozenset[StepStatus] = frozenset(
    {StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)
# Started and not finished: something (a process, a build, a person) is at work.
STEP_ACTIVE: frozenset[StepStatus] = frozenset({StepStatus.RUNNING, StepStatus.WAITING_APPROVAL})
# Finished without doing harm to the run: the next stage may start.
STEP_PASSED: frozenset[StepStatus] = frozenset({StepStatus.SUCCESS, StepStatus.SKIPPED})

RUN_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset(
        {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.WAITING_APPROVAL, RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.WAITING_APPROVAL: frozenset(
        {RunStatus.RUNNING, RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.SUCCESS: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

STEP_ALLOWED: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {
            StepStatus.RUNNING,
            StepStatus.WAITING_APPROVAL,
            StepStatus.SKIPPED,
            StepStatus.FAILED,
            StepStatus.CANCELLED,
        }
    ),
    StepStatus.RUNNING: frozenset({StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.CANCELLED}),
    StepStatus.WAITING_APPROVAL: frozenset(
        {StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.CANCELLED}
    ),
    StepStatus.SUCCESS: frozenset(),
    StepStatus.FAILED: frozenset(),
    StepStatus.CANCELLED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
}


class Verdict(StrEnum):
    ACCEPT = "accept"
    # Already there: a repeated request (double click, retry) is not an error.
    ALREADY = "already"
    REJECT = "reject"


def decide_run(current: RunStatus, proposed: RunStatus) -> Verdict:
    if current == proposed:
        return Verdict.ALREADY
    return Verdict.ACCEPT if proposed in RUN_ALLOWED[current] else Verdict.REJECT


def decide_step(current: StepStatus, proposed: StepStatus) -> Verdict:
    if current == proposed:
        return Verdict.ALREADY
    return Verdict.ACCEPT if proposed in STEP_ALLOWED[current] else Verdict.REJECT


def step_sources(proposed: StepStatus) -> frozenset[StepStatus]:
    """Statuses from which a step may move to ``proposed`` (for compare-and-set)."""
    return frozenset(s for s, targets in STEP_ALLOWED.items() if proposed in targets)


def run_sources(proposed: RunStatus) -> frozenset[RunStatus]:
    """Statuses from which a run may move to ``proposed`` (for compare-and-set)."""
    return frozenset(s for s, targets in RUN_ALLOWED.items() if proposed in targets)
