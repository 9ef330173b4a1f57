"""Pure rendering of the form, the picker and the App Home: Slack's limits, escaping, reading back.

Every view built here is checked with the fake Slack's own validator
(``tests.fakes.slack_views.view_problems``), the rules views.open and
views.publish apply.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.form_views import (
    FormContext,
    notice,
    parameter_form,
    picked,
    picker,
    read_context,
    sign_context,
    submitted_values,
)
from bot.home_views import HomeApproval, HomeData, HomePipeline, HomeRun, home_view
from engine.events import RunSnapshot
from engine.pipelines import Pipeline
from engine.state import RunStatus
from tests.fakes.slack_views import view_problems
from tests.slack_interactive import state_for

KEY = b"k" * 32
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HERE = FormContext("p", "U0ALICE01", "C0DEPLOYS1")


def pipeline(parameters: dict[str, Any], **extra: Any) -> Pipeline:
    return Pipeline.model_validate(
        {"name": "p", "parameters": parameters, "steps": [{"name": "s", "run": "true"}], **extra}
    )


def inputs(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in view["blocks"] if b["type"] == "input"]


@pytest.mark.parametrize(
    ("spec", "element", "optional", "initial"),
    [
        ({"default": "1.0"}, "plain_text_input", True, "1.0"),
        ({"required": True}, "plain_text_input", False, None),
        ({"required": True, "default": "x"}, "plain_text_input", True, "x"),
        ({"choices": ["a", "b"], "default": "b"}, "static_select", True, "b"),
        ({"choices": ["a", "b"], "required": True}, "static_select", False, None),
        ({"choices": [f"c{i}" for i in range(101)]}, "plain_text_input", True, None),
        ({"choices": ["x" * 76]}, "plain_text_input", True, None),
        ({"default": "y" * 3001}, "plain_text_input", True, None),
    ],
)
def test_one_input_per_parameter(
    spec: dict[str, Any], element: str, optional: bool, initial: str | None
) -> None:
    view = parameter_form(pipeline({"v": spec}), HERE, KEY)
    assert view is not None and view_problems(view, kind="modal") == []
    [block] = inputs(view)
    assert block["block_id"] == "param:v" and block["element"]["type"] == element
    assert block["optional"] is optional
    shown = block["element"].get("initial_value") or (
        block["element"].get("initial_option") or {}
    ).get("value")
    assert shown == initial


def test_the_hint_explains_description_pattern_and_choices_that_do_not_fit_a_select() -> None:
    spec = {
        "description": "Where to deploy",
        "pattern": "^[a-z]+$",
        "choices": [f"environment-{i}" for i in range(150)],
    }
    view = parameter_form(pipeline({"env": spec}), HERE, KEY)
    assert view is not None
    hint = inputs(view)[0]["hint"]["text"]
    assert hint.startswith(
        "Where to deploy. Must match the pattern ^[a-z]+$. One of: environment-0, environment-1"
    )
    assert len(hint) <= 2000 and hint.endswith("…")


def test_typed_values_win_over_defaults() -> None:
    view = parameter_form(pipeline({"v": {"default": "1"}}), HERE, KEY, {"v": "2"})
    assert view is not None and inputs(view)[0]["element"]["initial_value"] == "2"


@pytest.mark.parametrize(("count", "fits"), [(0, True), (98, True), (99, False), (300, False)])
def test_long_parameter_lists_fit_or_get_no_form(count: int, fits: bool) -> None:
    params = {f"p{i}": {"default": "x", "description": "d" * 3000} for i in range(count)}
    view = parameter_form(pipeline(params), HERE, KEY)
    assert (view is not None) is fits
    if view is not None:
        assert view_problems(view, kind="modal") == []
        assert len(view["blocks"]) <= 100


def test_a_form_escapes_what_the_pipeline_author_wrote() -> None:
    view = parameter_form(pipeline({}, description="<!channel> & co"), HERE, KEY)
    assert view is not None
    assert "&lt;!channel&gt; &amp; co" in str(view["blocks"]) and "<!channel>" not in str(view)
    assert "takes no parameters" in str(view["blocks"])


def test_values_come_back_from_the_state_as_slack_sends_it() -> None:
    view = parameter_form(
        pipeline({"a": {"choices": ["x", "y"]}, "b": {"default": "1"}, "c": {}}), HERE, KEY
    )
    assert view is not None
    state = state_for(view, {"param:a": "y", "param:c": ""})
    assert submitted_values(state) == {"a": "y", "b": "1"}  # empty c is left out
    assert submitted_values({"values": {"other": {"value": {"value": "z"}}}}) == {}


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m[:-1] + ("0" if m[-1] != "0" else "1"),
        lambda m: "x" + m,
        lambda m: "",
        lambda m: "garbage",
        lambda m: m.replace(".", "") + ".",
    ],
)
def test_tampered_metadata_is_refused(change: Any) -> None:
    good = sign_context(HERE, KEY)
    assert read_context(good, KEY) == HERE
    assert read_context(change(good), KEY) is None
    assert read_context(good, b"other key") is None


def test_dm_context_round_trips() -> None:
    home = FormContext("p", "U1", None)
    assert read_context(sign_context(home, KEY), KEY) == home


def test_picker_lists_names_and_says_how_many_it_left_out() -> None:
    names = [f"pipe-{i:03d}" for i in range(130)]
    view = picker(names, HERE, KEY)
    assert view_problems(view, kind="modal") == []
    [select] = inputs(view)
    assert len(select["element"]["options"]) == 100
    assert "30 more are not shown" in str(view["blocks"])
    chosen = {"values": {"pipeline": {"value": {"selected_option": {"value": "pipe-007"}}}}}
    assert picked(chosen) == "pipe-007" and picked({"values": {}}) is None


def test_notice_has_no_submit() -> None:
    view = notice("x" * 5000)
    assert view_problems(view, kind="modal") == [] and "submit" not in view


def run(run_id: int, status: RunStatus, pipeline_name: str = "p") -> RunSnapshot:
    return RunSnapshot(
        id=run_id,
        pipeline=pipeline_name,
        status=status,
        parameters={},
        trigger_type="manual",
        triggered_by="U0ALICE01",
        source="slack",
        channel_id="C1",
        thread_ts="1.1",
        reason=None,
        failed_step=None,
        created_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=65) if status == RunStatus.SUCCESS else None,
    )


def approval(i: int) -> HomeApproval:
    return HomeApproval(i, 100 + i, "deploy", "Gate <x>", "U0BOB0001", {"env": "prod"})


@pytest.mark.parametrize(
    ("pipelines", "runs", "approvals", "expect"),
    [
        (0, 0, 0, ["There are no pipelines you may run", "not started any runs", "Nothing is"]),
        (3, 2, 1, ["*Gate &lt;x&gt;* of *deploy #0*", "<https://l/1|p #1>", "1m 05s"]),
        (300, 10, 0, ["more: see `/ansflow list`"]),
        (5, 0, 45, ["25 more are waiting"]),
        (200, 10, 45, ["25 more are waiting", "more: see `/ansflow list`"]),
    ],
)
def test_home_fits_slacks_limits(
    pipelines: int, runs: int, approvals: int, expect: list[str]
) -> None:
    data = HomeData(
        "U0ALICE01",
        [HomePipeline(f"pipe-{i}", "d" * 2990, None if i % 2 else "C1") for i in range(pipelines)],
        [
            HomeRun(run(i, RunStatus.SUCCESS if i % 2 else RunStatus.RUNNING), f"https://l/{i}")
            for i in range(1, runs + 1)
        ],
        [approval(i) for i in range(approvals)],
    )
    view = home_view(data, T0 + timedelta(seconds=30))
    assert view_problems(view, kind="home") == []
    assert len(view["blocks"]) <= 100
    shown = str(view["blocks"])
    for text in expect:
        assert text in shown
    approve = [
        e["value"]
        for b in view["blocks"]
        for e in b.get("elements") or []
        if e.get("action_id") == "approval_approve"
    ]
    assert approve == [f"{i}:{100 + i}" for i in range(min(approvals, 20))]
    run_buttons = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id")]
    more = re.search(r"(\d+) more: see", shown)
    assert len(run_buttons) + (int(more.group(1)) if more else 0) == pipelines
