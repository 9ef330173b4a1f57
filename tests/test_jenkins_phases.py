"""The pure decisions behind Jenkins steps: parameters, ownership of builds, outcomes."""

from __future__ import annotations

from engine.jenkins.models import BuildInfo, QueueItem
from engine.jenkins.phases import (
    MARKER_PARAM,
    FollowState,
    backoff,
    build_outcome,
    is_ours_queued,
    our_build,
    parameters_to_send,
    substitute,
)
from engine.state import StepStatus


def state(**changes: object) -> FollowState:
    base = FollowState(phase="triggering", tool="jenkins", job="deploy", marker="7-9-1")
    return base.but(**changes)


def build(number: int, params: dict[str, str], result: str | None = "SUCCESS") -> BuildInfo:
    return BuildInfo(number, f"http://j/job/deploy/{number}/", result is None, result, 0, 1, params)


def test_substitute_replaces_known_names_only_as_plain_text() -> None:
    got = substitute(
        {"A": "v${version}", "B": "${missing}", "C": "$version ${ version}", "D": "${x}${x}"},
        {"version": "1.2; rm -rf /", "x": "$(id)"},
    )
    assert got == {
        "A": "v1.2; rm -rf /",
        "B": "${missing}",
        "C": "$version ${ version}",
        "D": "$(id)$(id)",
    }


def test_parameters_to_send_adds_the_marker_only_where_declared() -> None:
    declared = [("VERSION", "1.0"), (MARKER_PARAM, "")]
    sending = parameters_to_send({"VERSION": "2", "EXTRA": "x"}, declared, "7-9-1")
    assert sending.params == {"VERSION": "2", "EXTRA": "x", MARKER_PARAM: "7-9-1"}
    assert sending.match == {"VERSION": "2", MARKER_PARAM: "7-9-1"}
    assert sending.marked
    plain = parameters_to_send({"VERSION": "2"}, [("VERSION", "1.0")], "7-9-1")
    assert (plain.params, plain.marked) == ({"VERSION": "2"}, False)


def test_parameterized_job_without_step_parameters_gets_its_defaults() -> None:
    sending = parameters_to_send({}, [("VERSION", "1.0"), ("FILE", None)], "m")
    assert sending.params == {"VERSION": "1.0"}
    assert parameters_to_send({}, [], "m").params == {}


def test_marked_builds_and_items_are_ours_only_with_our_marker() -> None:
    marked = state(marked=True, bound=5, match={"V": "1", MARKER_PARAM: "7-9-1"})
    theirs = build(5, {"V": "1", MARKER_PARAM: "7-9-2"})
    ours = build(6, {"V": "1", MARKER_PARAM: "7-9-1"})
    assert our_build([theirs, ours], marked) == ours
    assert our_build([theirs], marked) is None
    item = QueueItem(3, True, False, None, None, None, parameters={"V": "1", MARKER_PARAM: "x"})
    assert not is_ours_queued(item, marked)


def test_unmarked_build_is_the_oldest_with_our_parameters_from_the_bound() -> None:
    unmarked = state(bound=5, match={"V": "1"})
    before = build(4, {"V": "1"})
    other = build(5, {"V": "2"})
    first, second = build(6, {"V": "1"}), build(7, {"V": "1"})
    assert our_build([second, first, other, before], unmarked) == first
    assert our_build([before, other], unmarked) is None
    assert our_build([first], state(match={"V": "1"})) is None  # never sent: nothing is ours


def test_build_outcomes() -> None:
    assert build_outcome(build(3, {}), None, False).status == StepStatus.SUCCESS
    for result in ("FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT"):
        outcome = build_outcome(build(3, {}, result), "tail", False)
        assert (outcome.status, outcome.reason, outcome.log) == (
            StepStatus.FAILED,
            f"Jenkins build #3 finished {result}",
            "tail",
        )
    cancelled = build_outcome(build(3, {}, "ABORTED"), "tail", True)
    assert cancelled.status == StepStatus.CANCELLED
    assert build_outcome(build(3, {}, "FAILURE"), "t", True).status == StepStatus.FAILED


def test_state_round_trips_and_ignores_what_it_does_not_know() -> None:
    s = state(queue=4, build=2, stop_requested_at=1.5)
    assert FollowState.from_json({**s.to_json(), "later": 1}) == s
    assert FollowState.from_json(None) is None
    assert FollowState.from_json({"pid": 3}) is None


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 0.5, 3.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
