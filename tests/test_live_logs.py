"""A running step's output, readable while it runs: the row, REST, Slack, the WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.output import MAX_BATCH_LINES, MAX_LINE_CHARS
from engine.state import StepStatus
from storage.models import StepRun
from tests.api_support import api_server, bearer
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import ALICE, SlackHarness, slack_server

E = "/api/v1/cicd/executions/"
SECRET = "jwt-secret-abcdef-0123456789-live"


def waiting(name: str, marker: Path, before: str, after: str = "echo second-line") -> str:
    return f"""\
name: {name}
steps:
  - name: Talk
    run: |
      {before}
      for i in $(seq 1 600); do [ -f "{marker}" ] && break; sleep 0.05; done
      {after}
"""


async def running_step(run_id: int) -> StepRun:
    step = await StepRun.filter(run_id=run_id).first()
    assert step is not None
    return step


async def test_the_row_and_the_rest_route_show_the_output_so_far(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "talk", waiting("talk", marker, "echo first-line"))
    async with api_server(database_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "talk"})).body
        # What other replicas serve: the step's row, written while it runs.
        step = await eventually(
            lambda: running_step(run["id"]), lambda s: "first-line" in s.log, timeout=10
        )
        assert step.status == StepStatus.RUNNING
        assert step.log_tail == "first-line"
        reply = await api.call("GET", f"{E}{run['id']}/logs/?step=Talk")
        assert reply.status == 200
        assert reply.text == "first-line\n"
        detail = (await api.call("GET", f"{E}{run['id']}/")).body
        assert detail["steps"][0]["status"] == "running"
        assert detail["steps"][0]["log_tail"] == "first-line"
        marker.touch()
        done = await api.wait_finished(run["id"])
        assert done["status"] == "success"
        final = await api.call("GET", f"{E}{run['id']}/logs/?step=Talk")
        assert final.text == "first-line\nsecond-line\n"


async def test_a_secret_printed_while_running_is_masked_in_the_row_and_the_route(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    # The secret's first half is printed, then (later) its second half.
    half = len(SECRET) // 2
    before = f"printf 'key=%s' '{SECRET[:half]}'"
    after = f"printf '%s\\n' '{SECRET[half:]}'"
    write_pipeline(pipelines_dir, "leak", waiting("leak", marker, before, after))
    env = {"ANSFLOW_JWT_SECRET": SECRET}
    async with api_server(sqlite_url, pipelines_dir, **env) as api:
        token = {"Authorization": "Bearer " + _token(SECRET)}
        run = (await api.call("POST", E, json={"pipeline": "leak"}, user=None, headers=token)).body
        step = await eventually(
            lambda: running_step(run["id"]), lambda s: s.log.startswith("key="), timeout=10
        )
        # Half a secret is held back until the rest shows whether it is one.
        assert step.log == "key="
        live = await api.call("GET", f"{E}{run['id']}/logs/?step=Talk", user=None, headers=token)
        assert live.text == "key="
        marker.touch()
        await api.server.core.engine.wait_finished(run["id"], timeout=30)
        step = await running_step(run["id"])
    assert step.log == "key=***\n"


def _token(secret: str) -> str:
    from tests.api_support import make_token

    return make_token("U222", secret=secret)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


async def test_slack_logs_shows_a_running_steps_output(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "talk", waiting("talk", marker, "echo first-line"))
    async with slack_server(sqlite_url, pipelines_dir, fake_slack) as slack:
        await slack.command("run talk")
        step = await eventually(
            lambda: StepRun.filter(name="Talk").first(),
            lambda s: s is not None and "first-line" in s.log,
            timeout=10,
        )
        assert step is not None and step.status == StepStatus.RUNNING
        await slack.command(f"logs {step.run_id} Talk")
        shown = await _last_ephemeral(slack, ALICE)
        marker.touch()
        await slack.server.core.engine.wait_finished(step.run_id, timeout=30)
    assert "first-line" in shown and "second-line" not in shown
    assert "still running" in shown


async def _last_ephemeral(slack: SlackHarness, user: str) -> str:
    async def probe() -> list[Any]:
        return [e for e in slack.fake.ephemerals if e.user == user and "Log of" in e.text]

    found = await eventually(probe, timeout=10)
    return str(found[-1].blocks)


async def _messages(ws: aiohttp.ClientWebSocketResponse, limit: int = 500) -> list[Any]:
    messages: list[Any] = []
    for _ in range(limit):
        message = await asyncio.wait_for(ws.receive(), timeout=60)
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        messages.append(json.loads(message.data))
    return messages


async def test_websocket_sends_the_lines_as_they_come_then_the_end(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "talk", waiting("talk", marker, "echo first-line"))
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "talk"})).body
        url = f"{api.url}/api/v1/ws/executions/{run['id']}/"
        async with api.http.ws_connect(url, headers=bearer("U222")) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "snapshot"
            first = await eventually(lambda: _next_log(ws), timeout=10)
            assert first == {
                "type": "step.log",
                "execution_id": run["id"],
                "step": "Talk",
                "step_id": first["step_id"],
                "lines": ["first-line"],
            }
            marker.touch()
            rest = await _messages(ws)
        logs = [m["lines"] for m in rest if m["type"] == "step.log"]
        assert logs == [["second-line"]]
        assert rest[-1]["type"] == "run.finished"


async def _next_log(ws: aiohttp.ClientWebSocketResponse) -> Any:
    message = json.loads((await asyncio.wait_for(ws.receive(), timeout=30)).data)
    return message if message["type"] == "step.log" else None


async def test_websocket_log_events_are_bounded_and_say_what_they_dropped(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    lines = 100_000
    long_line = "x" * (MAX_LINE_CHARS * 3)
    write_pipeline(
        pipelines_dir,
        "chatty",
        "name: chatty\nsteps:\n  - name: Flood\n"
        f"    run: echo {long_line}; seq 1 {lines}; sleep 0.5; echo last-line\n",
    )
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "chatty"})).body
        url = f"{api.url}/api/v1/ws/executions/{run['id']}/"
        async with api.http.ws_connect(url, headers=bearer("U222")) as ws:
            messages = await _messages(ws, limit=2000)
    events = [m for m in messages if m["type"] == "step.log"]
    shown = [line for e in events for line in e["lines"]]
    assert all(len(e["lines"]) <= MAX_BATCH_LINES for e in events)
    assert all(len(line) <= MAX_LINE_CHARS for line in shown)
    assert len(events) < 100  # batched, at most a few a second: not one per line or chunk
    assert any(line.startswith("[") and "not shown live" in line for line in shown)
    assert shown[-1] == "last-line"
    assert str(lines) in shown  # the newest lines win over the oldest
    assert messages[-1]["type"] == "run.finished"


async def test_websocket_without_logs_gets_status_events_only(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir, "hello", "name: hello\nsteps:\n  - name: Say\n    run: echo hi; sleep 0.5\n"
    )
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "hello"})).body
        url = f"{api.url}/api/v1/ws/executions/{run['id']}/?logs=0"
        async with api.http.ws_connect(url, headers=bearer("U222")) as ws:
            messages = await _messages(ws)
    assert "step.log" not in [m["type"] for m in messages]
    assert messages[-1]["type"] == "run.finished"


async def test_the_all_runs_stream_sends_log_lines_only_when_asked(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "talk", waiting("talk", marker, "echo first-line"))
    async with api_server(sqlite_url, pipelines_dir) as api:
        base = f"{api.url}/api/v1/ws/executions/"
        async with (
            api.http.ws_connect(base + "?logs=1", headers=bearer("U222")) as with_logs,
            api.http.ws_connect(base, headers=bearer("U222")) as without,
        ):
            for ws in (with_logs, without):
                assert json.loads((await ws.receive()).data)["type"] == "snapshot"
            run = (await api.call("POST", E, json={"pipeline": "talk"})).body
            first = await eventually(lambda: _next_log(with_logs), timeout=10)
            assert first["execution_id"] == run["id"] and first["lines"] == ["first-line"]
            marker.touch()
            await api.server.core.engine.wait_finished(run["id"], timeout=30)
            seen: list[str] = []
            for _ in range(100):
                message = await asyncio.wait_for(without.receive(), timeout=30)
                seen.append(json.loads(message.data)["type"])
                if seen[-1] == "run.finished":
                    break
    assert "step.log" not in seen and "step.started" in seen
