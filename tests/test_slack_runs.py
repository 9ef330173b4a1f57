"""A run started from Slack: one root card updated in place, step replies, broadcast end, Cancel."""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.views import CANCEL_ACTION_ID
from engine.state import RunStatus
from storage.models import Run, StepRun
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import ALICE, BOB, CHANNEL, SlackHarness, slack_server

DEPLOY = """\
name: deploy-web
description: Build and deploy the web app
parameters:
  version: {default: "1.0", pattern: '^[0-9.]+$'}
  env: {choices: [staging, production], required: true}
steps:
  - name: Build
    run: echo "building $version for $env"
  - name: Deploy
    run: echo deployed
"""

FAILING = """\
name: fail-svc
steps:
  - name: Compile
    run: 'for i in $(seq 1 300); do echo "line $i of the compiler output"; done; exit 3'
  - name: Never
    run: echo never
"""

SLOW = """\
name: slow-svc
parameters:
  who: {default: nobody}
steps:
  - name: Wait
    run: sleep 300
"""


@pytest.fixture
async def slack(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "deploy-web", DEPLOY)
    write_pipeline(pipelines_dir, "fail-svc", FAILING)
    write_pipeline(pipelines_dir, "slow-svc", SLOW)
    async with slack_server(database_url, pipelines_dir, fake) as harness:
        yield harness


async def only_run() -> Run:
    runs = await Run.all()
    assert len(runs) == 1, runs
    return runs[0]


async def finished_run() -> Run:
    async def probe() -> Run | None:
        run = await Run.first()
        return run if run is not None and run.status in ("success", "failed", "cancelled") else None

    run = await eventually(probe, timeout=30)
    assert run is not None
    return run


async def test_success_posts_one_root_updated_in_place_with_step_replies_and_broadcast(
    slack: SlackHarness,
) -> None:
    status, _ = await slack.command('run deploy-web env=staging version="2.1"')
    assert status == 200
    run = await finished_run()
    assert run.status == RunStatus.SUCCESS
    assert run.source == "slack" and run.channel_id == CHANNEL and run.triggered_by == ALICE

    def settled() -> bool:
        root = slack.root_of(run.id)
        return (
            root is not None
            and "succeeded" in root.text
            and any(m.reply_broadcast for m in slack.fake.messages(CHANNEL))
        )

    await eventually(lambda: _value(settled()), timeout=20)
    root = slack.root_of(run.id)
    assert root is not None
    assert len(slack.roots()) == 1
    stored = await Run.get(id=run.id)
    assert stored.thread_ts == root.ts
    card = str(root.blocks)
    assert "deploy-web" in card and "version=2.1" in card and f"<@{ALICE}>" in card
    assert CANCEL_ACTION_ID not in root.action_ids()
    thread = slack.fake.thread(CHANNEL, root.ts)[1:]
    texts = [m.text for m in thread]
    assert any("Build" in t for t in texts) and any("Deploy" in t for t in texts)
    final = thread[-1]
    assert final.reply_broadcast and "succeeded" in final.text
    assert f"<@{ALICE}>" in str(final.blocks)
    assert len(slack.fake.calls_for("chat.postMessage")) == len(thread) + 1


async def _value(flag: bool) -> bool:
    return flag


async def test_failure_reply_shows_log_tail_and_attaches_the_whole_log(slack: SlackHarness) -> None:
    await slack.command("run fail-svc")
    run = await finished_run()
    assert run.status == RunStatus.FAILED

    async def broadcast() -> list[str]:
        return [m.text for m in slack.fake.messages(CHANNEL) if m.reply_broadcast]

    [final] = await eventually(broadcast, timeout=20)
    assert "Compile" in final
    await eventually(lambda: _value(len(slack.fake.files) == 1), timeout=20)
    [upload] = slack.fake.files
    assert upload.content is not None and b"line 1 of the compiler output" in upload.content
    root = slack.root_of(run.id)
    assert root is not None and upload.thread_ts == root.ts
    replies = slack.fake.thread(CHANNEL, root.ts)[1:]
    compile_reply = next(m for m in replies if "Compile failed" in m.text and not m.reply_broadcast)
    shown = str(compile_reply.blocks)
    assert "line 300 of the compiler output" in shown
    assert "line 1 of the compiler output" not in shown
    for block in compile_reply.blocks or []:
        assert len(str((block.get("text") or {}).get("text", ""))) <= 3000
    assert not any("Never" in m.text for m in replies)


async def _step_pid() -> int | None:
    step = await StepRun.filter(name="Wait").first()
    return int(step.external_id) if step is not None and step.external_id else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    )


async def test_cancel_button_kills_the_step_and_a_second_click_changes_nothing(
    slack: SlackHarness,
) -> None:
    await slack.command("run slow-svc")
    pid = await eventually(_step_pid, timeout=20)
    assert pid is not None and _alive(pid)
    run = await only_run()

    async def root_with_button() -> object:
        root = slack.root_of(run.id)
        return root if root is not None and CANCEL_ACTION_ID in root.action_ids() else None

    root = copy.deepcopy(await eventually(root_with_button, timeout=20))
    assert root is not None
    status, _ = await slack.click(root, CANCEL_ACTION_ID, ALICE)  # type: ignore[arg-type]
    assert status == 200
    finished = await finished_run()
    assert finished.status == RunStatus.CANCELLED and finished.cancel_requested_by == ALICE
    await eventually(lambda: _value(not _alive(pid)), timeout=10)
    status, _ = await slack.click(root, CANCEL_ACTION_ID, ALICE)  # type: ignore[arg-type]
    assert status == 200
    await eventually(lambda: _value(len(slack.ephemerals_for(ALICE)) == 2), timeout=10)
    assert "already ended" in slack.ephemerals_for(ALICE)[-1]
    assert (await Run.get(id=run.id)).cancel_requested_by == ALICE

    async def final_root() -> bool:
        current = slack.root_of(run.id)
        return current is not None and "cancelled" in current.text

    await eventually(final_root, timeout=20)
    current = slack.root_of(run.id)
    assert current is not None and CANCEL_ACTION_ID not in current.action_ids()


async def test_cancel_command_kills_the_step(slack: SlackHarness) -> None:
    await slack.command("run slow-svc")
    pid = await eventually(_step_pid, timeout=20)
    assert pid is not None
    run = await only_run()
    await slack.command(f"cancel {run.id}")
    finished = await finished_run()
    assert finished.status == RunStatus.CANCELLED
    await eventually(lambda: _value(not _alive(pid)), timeout=10)
    await eventually(lambda: _value(bool(slack.ephemerals_for(ALICE))), timeout=10)
    assert f"Cancelling run #{run.id}" in slack.ephemerals_for(ALICE)[0]


async def test_someone_else_cannot_cancel_by_button_or_command(slack: SlackHarness) -> None:
    await slack.command("run slow-svc")
    pid = await eventually(_step_pid, timeout=20)
    assert pid is not None
    run = await only_run()

    async def root_with_button() -> object:
        root = slack.root_of(run.id)
        return root if root is not None and CANCEL_ACTION_ID in root.action_ids() else None

    root = await eventually(root_with_button, timeout=20)
    await slack.click(root, CANCEL_ACTION_ID, BOB)  # type: ignore[arg-type]
    await slack.command(f"cancel {run.id}", user=BOB)
    refusals = await eventually(
        lambda: _value(slack.ephemerals_for(BOB)), ready=lambda v: len(v) == 2, timeout=10
    )
    assert all("Only the person who started this run" in text for text in refusals)
    stored = await Run.get(id=run.id)
    assert stored.status == RunStatus.RUNNING and stored.cancel_requested_at is None
    assert _alive(pid)
    assert slack.ephemerals_for(ALICE) == []


async def test_a_run_started_from_the_api_posts_to_the_pipelines_channel(
    slack: SlackHarness, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir,
        "nightly",
        "name: nightly\nchannel: C0NIGHTLY1\nsteps:\n  - {name: a, run: 'true'}\n",
    )
    from engine.permissions import Actor
    from engine.runner import RunRequest

    snap = await slack.server.core.engine.start_run(
        RunRequest("nightly", {}, Actor("api-bot"), trigger_type="api", source="api")
    )

    async def broadcast() -> list[str]:
        return [m.text for m in slack.fake.messages("C0NIGHTLY1") if m.reply_broadcast]

    [final] = await eventually(broadcast, timeout=20)
    assert f"nightly #{snap.id} succeeded" in final
    root = slack.root_of(snap.id, "C0NIGHTLY1")
    assert root is not None and "via the API" in str(root.blocks)
