"""Pure rendering: Slack's limits, escaping, the button's identity; and the manifest."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot import views
from bot.endpoint import parse_body
from bot.manifest import cmd_manifest, manifest, render
from engine.events import RunSnapshot, StepSnapshot
from engine.state import RunStatus, StepStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def snapshot(status: RunStatus, steps: tuple[StepSnapshot, ...], **extra: object) -> RunSnapshot:
    fields: dict[str, object] = dict(
        id=7,
        pipeline="deploy-web",
        status=status,
        parameters={"msg": "<!channel> & co"},
        trigger_type="manual",
        triggered_by="U0ALICE01",
        source="slack",
        channel_id="C1",
        thread_ts=None,
        reason=None,
        failed_step=None,
        created_at=T0,
        started_at=T0,
        finished_at=None,
        steps=steps,
    )
    fields.update(extra)
    return RunSnapshot(**fields)  # type: ignore[arg-type]


def step(status: StepStatus, tail: str = "", **extra: object) -> StepSnapshot:
    return StepSnapshot(
        id=3,
        path="0",
        name="Build",
        kind="run",
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=75),
        log_tail=tail,
        **extra,  # type: ignore[arg-type]
    )


def section_texts(message: views.Message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def test_running_card_has_one_cancel_button_naming_the_run() -> None:
    card = views.run_card(snapshot(RunStatus.RUNNING, (step(StepStatus.RUNNING),)), T0)
    [actions] = [b for b in card.blocks if b["type"] == "actions"]
    [button] = actions["elements"]
    assert (button["action_id"], button["value"], actions["block_id"]) == (
        "cancel_run",
        "7",
        "run_actions:7",
    )
    finished = views.run_card(
        snapshot(RunStatus.SUCCESS, (), finished_at=T0 + timedelta(seconds=5)), T0
    )
    [actions] = [b for b in finished.blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [("rerun_run", "7")]
    assert "Took 5s" in str(finished.blocks)


def test_user_text_and_logs_are_escaped() -> None:
    card = views.run_card(snapshot(RunStatus.RUNNING, ()), T0)
    assert "<!channel>" not in str(card.blocks) and "&lt;!channel&gt; &amp; co" in str(card.blocks)
    reply = views.step_reply(snapshot(RunStatus.RUNNING, ()), step(StepStatus.FAILED, "<@U1> ```x"))
    assert "<@U1>" not in str(reply.blocks) and "```x" not in section_texts(reply)[1][4:-4]


@pytest.mark.parametrize("size", [10, 2999, 3000, 50_000])
def test_failure_tail_fits_the_section_limit(size: int) -> None:
    tail = ("x" * 99 + "\n") * (size // 100) + "LAST LINE"
    reply = views.step_reply(snapshot(RunStatus.FAILED, ()), step(StepStatus.FAILED, tail))
    assert all(len(t) <= views.SECTION_LIMIT for t in section_texts(reply))
    assert "LAST LINE" in section_texts(reply)[1]
    done = views.completion(
        snapshot(
            RunStatus.FAILED,
            (step(StepStatus.FAILED, tail),),
            failed_step="Build",
            reason="exited with 3",
            finished_at=T0 + timedelta(seconds=90),
        )
    )
    assert "Failed at step *Build*: exited with 3" in str(done.blocks)
    assert all(len(t) <= views.SECTION_LIMIT for t in section_texts(done))


def test_many_pipelines_stay_within_fifty_blocks() -> None:
    from engine.pipelines import Pipeline

    pipelines = [
        Pipeline.model_validate({"name": f"p{i}", "steps": [{"name": "a", "run": "true"}]})
        for i in range(80)
    ]
    listed = views.pipeline_list(pipelines)
    assert len(listed.blocks) <= views.MAX_BLOCKS
    assert "p79" in str(listed.blocks)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "command=%2Fansflow&text=run+payload-svc",
            {"command": "/ansflow", "text": "run payload-svc"},
        ),
        ("command=%2Fansflow&text=payload%3D1", {"command": "/ansflow", "text": "payload=1"}),
        ("payload=%7B%22type%22%3A%22block_actions%22%7D", {"type": "block_actions"}),
        ('{"type": "event_callback"}', {"type": "event_callback"}),
        ("", {}),
    ],
)
def test_body_parsing_takes_payload_only_from_a_payload_field(
    body: str, expected: dict[str, str]
) -> None:
    assert parse_body(body, "application/x-www-form-urlencoded") == expected


def test_manifest_file_matches_the_generator_and_fills_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(__file__).resolve().parent.parent
    assert (root / "manifest.yml").read_text(encoding="utf-8") == render()
    assert cmd_manifest(argparse.Namespace(url="https://ci.example.org/", socket_mode=False)) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["features"]["slash_commands"][0]["url"] == "https://ci.example.org/slack/events"
    assert (
        printed["settings"]["interactivity"]["request_url"] == "https://ci.example.org/slack/events"
    )
    assert "commands" in printed["oauth_config"]["scopes"]["bot"]
    socket = manifest(None, socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]
    assert cmd_manifest(argparse.Namespace(url="ci.example.org", socket_mode=False)) == 2


def _slack_error(status: int, error: str, headers: dict[str, str] | None = None) -> Exception:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_slack_response import AsyncSlackResponse

    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://127.0.0.1/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError(error, response)


def test_slack_answers_are_classified() -> None:
    import aiohttp

    from bot.outcomes import api_failure, transport_failure

    limited = api_failure(_slack_error(429, "ratelimited", {"Retry-After": "7"}))  # type: ignore[arg-type]
    assert (limited.retry, limited.ambiguous, limited.after) == (True, False, 7.0)
    down = api_failure(_slack_error(503, "service_unavailable"))  # type: ignore[arg-type]
    assert (down.retry, down.after) == (True, None)
    gone = api_failure(_slack_error(200, "channel_not_found"))  # type: ignore[arg-type]
    assert (gone.retry, gone.error) == (False, "channel_not_found")
    assert transport_failure(TimeoutError()).ambiguous is True
    assert transport_failure(aiohttp.ServerDisconnectedError()).ambiguous is True
