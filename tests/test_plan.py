from __future__ import annotations

import pytest

from engine.plan import Plan, StepView, plan
from engine.state import RunStatus, StepStatus

P, R, W, S, F, C, K = (
    StepStatus.PENDING,
    StepStatus.RUNNING,
    StepStatus.WAITING_APPROVAL,
    StepStatus.SUCCESS,
    StepStatus.FAILED,
    StepStatus.CANCELLED,
    StepStatus.SKIPPED,
)


def stages(*groups: list[StepStatus]) -> list[list[StepView]]:
    """Stage i of one step gets path "i"; of several, "i.j"."""
    result = []
    for i, group in enumerate(groups):
        if len(group) == 1:
            result.append([StepView(str(i), group[0])])
        else:
            result.append([StepView(f"{i}.{j}", s) for j, s in enumerate(group)])
    return result


CASES: list[tuple[str, list[list[StepView]], bool, Plan]] = [
    ("fresh sequential run starts the first step", stages([P], [P]), False, Plan(start=["0"])),
    ("first running: nothing new", stages([R], [P]), False, Plan()),
    ("first done: second starts", stages([S], [P]), False, Plan(start=["1"])),
    ("all done: success", stages([S], [S]), False, Plan(outcome=RunStatus.SUCCESS)),
    (
        "parallel group starts together",
        stages([S], [P, P, P]),
        False,
        Plan(start=["1.0", "1.1", "1.2"]),
    ),
    ("parallel group waits for its slowest", stages([S], [S, R], [P]), False, Plan()),
    (
        "after a parallel group the next stage starts",
        stages([S], [S, S], [P]),
        False,
        Plan(start=["2"]),
    ),
    (
        "failure skips what did not start and ends failed",
        stages([F], [P], [P]),
        False,
        Plan(skip=["1", "2"], outcome=RunStatus.FAILED),
    ),
    (
        "failure inside a group waits for its running siblings",
        stages([F, R], [P]),
        False,
        Plan(skip=["1"]),
    ),
    ("failure once siblings end", stages([F, S], [K]), False, Plan(outcome=RunStatus.FAILED)),
    (
        "approval waiting: run waits",
        stages([S], [W], [P]),
        False,
        Plan(run_status=RunStatus.WAITING_APPROVAL),
    ),
    (
        "approval beside a running step: run is running",
        stages([W, R]),
        False,
        Plan(run_status=RunStatus.RUNNING),
    ),
    ("approval granted: next starts", stages([S], [S], [P]), False, Plan(start=["2"])),
    (
        "cancel while running: cancel active, skip pending",
        stages([S], [R], [P]),
        True,
        Plan(skip=["2"], cancel=["1"]),
    ),
    ("cancel while waiting for approval", stages([W], [P]), True, Plan(skip=["1"], cancel=["0"])),
    ("cancel settled: cancelled", stages([S], [C], [K]), True, Plan(outcome=RunStatus.CANCELLED)),
    (
        "cancel before anything started",
        stages([P], [P]),
        True,
        Plan(skip=["0", "1"], outcome=RunStatus.CANCELLED),
    ),
    (
        "cancelled step without a cancel request fails the run",
        stages([C], [P]),
        False,
        Plan(skip=["1"], outcome=RunStatus.FAILED),
    ),
    ("skipped steps count as passed", stages([K], [P]), False, Plan(start=["1"])),
]


@pytest.mark.parametrize(
    ("stage_list", "cancel", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan(stage_list: list[list[StepView]], cancel: bool, expected: Plan) -> None:
    assert plan(stage_list, cancel_requested=cancel) == expected
