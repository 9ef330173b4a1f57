"""What a run does next: a pure function of its pinned stages and step statuses.

Sequential stages, parallel groups, stop-on-failure, approvals and cancel all
live here (ARCHITECTURE.md decision 3). The runner only carries out the plan;
a change violates this when the runner decides on its own which step starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.state import STEP_ACTIVE, STEP_PASSED, RunStatus, StepStatus


@dataclass(frozen=True)
class StepView:
    path: str
    status: StepStatus


@dataclass(frozen=True)
class Plan:
    start: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    # Set when nothing is left to do: the run's terminal status.
    outcome: RunStatus | None = None
    # While the run goes on: running, or waiting_approval when only approvals are open.
    run_status: RunStatus = RunStatus.RUNNING


def _ongoing_status(steps: list[StepView], starting: list[str]) -> RunStatus:
    if starting:
        return RunStatus.RUNNING
    active = [s.status for s in steps if s.status in STEP_ACTIVE]
    if active and all(s == StepStatus.WAITING_APPROVAL for s in active):
        return RunStatus.WAITING_APPROVAL
    return RunStatus.RUNNING


def plan(stages: list[list[StepView]], *, cancel_requested: bool = False) -> Plan:
    steps = [step for stage in stages for step in stage]
    pending = [s.path for s in steps if s.status == StepStatus.PENDING]
    active = [s.path for s in steps if s.status in STEP_ACTIVE]

    if cancel_requested:
        return Plan(
            skip=pending,
            cancel=active,
            outcome=None if active else RunStatus.CANCELLED,
        )

    broken = any(s.status in (StepStatus.FAILED, StepStatus.CANCELLED) for s in steps)
    if broken:
        if active:
            return Plan(skip=pending, run_status=_ongoing_status(steps, []))
        return Plan(skip=pending, outcome=RunStatus.FAILED)

    for stage in stages:
        if all(s.status in STEP_PASSED for s in stage):
            continue
        start = [s.path for s in stage if s.status == StepStatus.PENDING]
        return Plan(start=start, run_status=_ongoing_status(steps, start))
    return Plan(outcome=RunStatus.SUCCESS)
