from __future__ import annotations

import itertools

import pytest

from engine.state import (
    RUN_ACTIVE,
    RUN_ALLOWED,
    RUN_TERMINAL,
    STEP_ACTIVE,
    STEP_ALLOWED,
    STEP_TERMINAL,
    RunStatus,
    StepStatus,
    Verdict,
    decide_run,
    decide_step,
)

RUN_EXPECTED = {
    (RunStatus.PENDING, RunStatus.QUEUED),
    (RunStatus.QUEUED, RunStatus.RUNNING),
    (RunStatus.QUEUED, RunStatus.CANCELLED),
    (RunStatus.PENDING, RunStatus.RUNNING),
    (RunStatus.PENDING, RunStatus.FAILED),
    (RunStatus.PENDING, RunStatus.CANCELLED),
    (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL),
    (RunStatus.RUNNING, RunStatus.SUCCESS),
    (RunStatus.RUNNING, RunStatus.FAILED),
    (RunStatus.RUNNING, RunStatus.CANCELLED),
    (RunStatus.WAITING_APPROVAL, RunStatus.RUNNING),
    (RunStatus.WAITING_APPROVAL, RunStatus.SUCCESS),
    (RunStatus.WAITING_APPROVAL, RunStatus.FAILED),
    (RunStatus.WAITING_APPROVAL, RunStatus.CANCELLED),
}

STEP_EXPECTED = {
    (StepStatus.PENDING, StepStatus.RUNNING),
    (StepStatus.PENDING, StepStatus.WAITING_APPROVAL),
    (StepStatus.PENDING, StepStatus.SKIPPED),
    (StepStatus.PENDING, StepStatus.FAILED),
    (StepStatus.PENDING, StepStatus.CANCELLED),
    (StepStatus.RUNNING, StepStatus.SUCCESS),
    (StepStatus.RUNNING, StepStatus.FAILED),
    (StepStatus.RUNNING, StepStatus.CANCELLED),
    (StepStatus.WAITING_APPROVAL, StepStatus.SUCCESS),
    (StepStatus.WAITING_APPROVAL, StepStatus.FAILED),
    (StepStatus.WAITING_APPROVAL, StepStatus.CANCELLED),
}


def test_run_sets_cover_every_status_exactly_once() -> None:
    assert set(RunStatus) == RUN_TERMINAL | RUN_ACTIVE
    assert not RUN_TERMINAL & RUN_ACTIVE
    assert set(RUN_ALLOWED) == set(RunStatus)


def test_step_sets_cover_every_status() -> None:
    assert STEP_TERMINAL | STEP_ACTIVE | {StepStatus.PENDING} == set(StepStatus)
    assert not STEP_TERMINAL & STEP_ACTIVE
    assert set(STEP_ALLOWED) == set(StepStatus)


@pytest.mark.parametrize(("current", "proposed"), list(itertools.product(RunStatus, RunStatus)))
def test_every_run_transition(current: RunStatus, proposed: RunStatus) -> None:
    verdict = decide_run(current, proposed)
    if current == proposed:
        assert verdict == Verdict.ALREADY
    elif (current, proposed) in RUN_EXPECTED:
        assert verdict == Verdict.ACCEPT
    else:
        assert verdict == Verdict.REJECT


@pytest.mark.parametrize(("current", "proposed"), list(itertools.product(StepStatus, StepStatus)))
def test_every_step_transition(current: StepStatus, proposed: StepStatus) -> None:
    verdict = decide_step(current, proposed)
    if current == proposed:
        assert verdict == Verdict.ALREADY
    elif (current, proposed) in STEP_EXPECTED:
        assert verdict == Verdict.ACCEPT
    else:
        assert verdict == Verdict.REJECT


def test_terminal_statuses_never_move() -> None:
    for status in RUN_TERMINAL:
        assert not RUN_ALLOWED[status]
    for step_status in STEP_TERMINAL:
        assert not STEP_ALLOWED[step_status]
