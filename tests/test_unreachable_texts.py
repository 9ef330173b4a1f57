"""What a step says while Jenkins cannot be reached, and when it times out (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.views import run_card
from engine.events import RunSnapshot, StepSnapshot
from engine.executors.base import DEFAULT_TIMEOUT, step_timeout
from engine.jenkins.phases import timed_out_reason, unreachable_note
from engine.pipelines import parse_pipeline
from engine.state import RunStatus, StepStatus


def test_the_note_and_the_timeout_reason() -> None:
    note = unreachable_note("ci", "connection refused")
    assert note == "Jenkins ci unreachable: connection refused; retrying"
    assert (
        timed_out_reason(30, note)
        == "timed out after 30s (Jenkins ci unreachable: connection refused)"
    )
    assert timed_out_reason(30, None) == "timed out after 30s"
    assert timed_out_reason(30, "some other reason") == "timed out after 30s"


@pytest.mark.parametrize(
    ("step_timeout_text", "pipeline_timeout_text", "expected"),
    [("timeout: 5", "", 5.0), ("", "timeout: 7\n", 7.0), ("", "", DEFAULT_TIMEOUT)],
)
def test_one_default_timeout_for_shell_and_jenkins_steps(
    step_timeout_text: str, pipeline_timeout_text: str, expected: float
) -> None:
    text = (
        f"name: t\n{pipeline_timeout_text}steps:\n"
        f"  - name: sh\n    run: 'true'\n    {step_timeout_text}\n"
        f"  - name: j\n    jenkins: {{job: x}}\n    {step_timeout_text}\n"
    )
    pipeline, problems = parse_pipeline(text, Path("t.yml"))
    assert pipeline is not None, problems
    assert [step_timeout(spec, pipeline) for _, spec in pipeline.leaves()] == [expected, expected]


def test_the_run_card_shows_a_running_steps_reason_only_while_it_runs() -> None:
    now = datetime.now(UTC)
    note = unreachable_note("jenkins", "connection refused")

    def card(status: StepStatus) -> str:
        step = StepSnapshot(1, "0", "Deploy", "jenkins", status, now, None, reason=note)
        run = RunSnapshot(
            id=4, pipeline="deploy", status=RunStatus.RUNNING, parameters={},
            trigger_type="manual", triggered_by="U1", source="slack", channel_id="C1",
            thread_ts=None, reason=None, failed_step=None, created_at=now, started_at=now,
            finished_at=None, steps=(step,),
        )  # fmt: skip
        return str(run_card(run, now).blocks)

    assert f"Reason: {note}" in card(StepStatus.RUNNING)
    assert "unreachable" not in card(StepStatus.SUCCESS)
