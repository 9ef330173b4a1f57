"""Approval gates through Slack: signed clicks on the posted Approve/Reject buttons."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.views import APPROVE_ACTION_ID, CANCEL_ACTION_ID, REJECT_ACTION_ID
from engine.state import RunStatus, StepStatus
from storage.models import ApprovalDecision, Run, StepRun
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_store import StoredMessage
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import ALICE, BOB, CHANNEL, SlackHarness, slack_server

CAROL = "U0CAROL01"
DAVE = "U0DAVE001"


def gated(marker: Path, required: int = 1, timeout: str = "") -> str:
    return f"""\
name: gated
parameters:
  version: {{default: "1.0"}}
steps:
  - name: Build
    run: echo built
  - name: Approve production
    approval:
      approvers: [{BOB}, {CAROL}, {ALICE}]
      required: {required}
      {timeout}
  - name: Deploy
    run: echo deployed >> {marker}
"""


async def start(slack: SlackHarness, text: str = "run gated version=2.0") -> Run:
    status, _ = await slack.command(text)
    assert status == 200

    async def the_run() -> Run | None:
        return await Run.first()

    run = await eventually(the_run)
    assert run is not None
    return run


async def gate_message(slack: SlackHarness, with_buttons: bool = True) -> StoredMessage:
    def find() -> StoredMessage | None:
        for message in slack.fake.messages(CHANNEL):
            is_gate = message.is_reply and "needs approval" in str(message.blocks)
            if is_gate and (not with_buttons or APPROVE_ACTION_ID in message.action_ids()):
                return message
        return None

    async def probe() -> StoredMessage | None:
        return find()

    found = await eventually(probe, timeout=20)
    assert found is not None
    return found


async def rounds_lost(slack: SlackHarness) -> float:
    async with slack.http.get(f"{slack.server.url}/metrics") as response:
        text = await response.text()
    (line,) = [x for x in text.splitlines() if x.startswith("ansflow_rounds_lost_total ")]
    return float(line.split()[1])


async def run_status(run_id: int) -> str:
    run = await Run.get(id=run_id)
    return run.status


async def test_an_approver_clicks_approve_and_the_run_goes_on(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker))
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
        shown = str(gate.blocks)
        assert f"<@{BOB}>" in shown and f"<@{CAROL}>" in shown  # approvers are mentioned
        assert "gated" in shown and "version=2.0" in shown and f"<@{ALICE}>" in shown
        assert {APPROVE_ACTION_ID, REJECT_ACTION_ID} <= set(gate.action_ids())
        assert await run_status(run.id) == RunStatus.WAITING_APPROVAL

        status, _ = await slack.click(gate, APPROVE_ACTION_ID, BOB)
        assert status == 200
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.SUCCESS, timeout=20)

        async def decided() -> StoredMessage | None:
            message = next(m for m in slack.fake.messages(CHANNEL) if m.ts == gate.ts)
            return message if not message.action_ids() else None

        updated = await eventually(decided, timeout=20)
        assert updated is not None
        assert f"Approved by <@{BOB}> at" in str(updated.blocks)
    assert marker.read_text() == "deployed\n"


async def test_a_thread_stored_while_a_gate_waits_costs_the_approval_no_lost_round(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    """The root is posted (Slack was down) while the gate waits: storing its thread
    moves the run's row, and the engine, told so, plans the approval from a read."""
    write_pipeline(pipelines_dir, "gated", gated(tmp_path / "m"))
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        fake.go_down()
        run = await start(slack)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.WAITING_APPROVAL)
        fake.come_up()
        gate = await gate_message(slack)
        assert (await Run.get(id=run.id)).thread_ts == gate.thread_ts

        status, _ = await slack.click(gate, APPROVE_ACTION_ID, BOB)
        assert status == 200
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.SUCCESS, timeout=20)
        assert await rounds_lost(slack) == 0.0


async def test_clicks_by_non_approvers_and_the_starter_are_refused_privately(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path / "m"))
    async with slack_server(sqlite_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
        await slack.click(gate, APPROVE_ACTION_ID, DAVE)
        await slack.click(gate, APPROVE_ACTION_ID, ALICE)  # the starter

        async def refusals() -> list[str]:
            return slack.ephemerals_for(DAVE) + slack.ephemerals_for(ALICE)

        texts = await eventually(refusals, lambda t: len(t) == 2, timeout=20)
        assert any("can decide this approval" in t for t in slack.ephemerals_for(DAVE))
        assert any("cannot approve it yourself" in t for t in slack.ephemerals_for(ALICE))
        assert len(texts) == 2
        assert await ApprovalDecision.all().count() == 0
        assert await run_status(run.id) == RunStatus.WAITING_APPROVAL
        current = next(m for m in slack.fake.messages(CHANNEL) if m.ts == gate.ts)
        assert APPROVE_ACTION_ID in current.action_ids()
        root = slack.root_of(run.id)
        assert root is not None
        await slack.click(root, CANCEL_ACTION_ID, ALICE)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.CANCELLED, timeout=20)


async def test_two_approvals_when_two_are_required(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker, required=2))
    async with slack_server(sqlite_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
        await slack.click(gate, APPROVE_ACTION_ID, BOB)
        await eventually(lambda: ApprovalDecision.all().count(), lambda n: n == 1, timeout=20)
        assert await run_status(run.id) == RunStatus.WAITING_APPROVAL
        assert not marker.exists()
        await slack.click(gate, APPROVE_ACTION_ID, CAROL)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.SUCCESS, timeout=20)
    assert marker.read_text() == "deployed\n"


async def test_reject_fails_the_run_and_the_next_step_never_runs(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker))
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
        await slack.click(gate, REJECT_ACTION_ID, CAROL)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.FAILED, timeout=20)
        stored = await Run.get(id=run.id)
        deploy = await StepRun.get(run_id=run.id, name="Deploy")

        async def broadcast() -> list[str]:
            return [str(m.blocks) for m in slack.fake.messages(CHANNEL) if m.reply_broadcast]

        [final] = await eventually(broadcast, timeout=20)
    assert stored.reason == f"rejected by @{CAROL}"
    assert deploy.status == StepStatus.SKIPPED
    assert not marker.exists()
    assert f"rejected by <@{CAROL}>" in final


async def test_a_double_click_decides_once_and_runs_the_next_step_once(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker))
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
        replies = await asyncio.gather(
            slack.click(gate, APPROVE_ACTION_ID, BOB),
            slack.click(gate, APPROVE_ACTION_ID, BOB),
            slack.click(gate, APPROVE_ACTION_ID, CAROL),
        )
        assert [status for status, _ in replies] == [200, 200, 200]
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.SUCCESS, timeout=20)
        deploy = await StepRun.get(run_id=run.id, name="Deploy")
    assert deploy.attempt == 1
    assert marker.read_text() == "deployed\n"


async def test_an_unanswered_gate_times_out_and_loses_its_buttons(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    write_pipeline(pipelines_dir, "gated", gated(tmp_path / "m", timeout="timeout: 1"))
    async with slack_server(sqlite_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack, with_buttons=False)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.FAILED, timeout=20)
        assert (await Run.get(id=run.id)).reason == "approval timed out"

        async def expired() -> StoredMessage | None:
            message = next(m for m in slack.fake.messages(CHANNEL) if m.ts == gate.ts)
            return message if "timed out" in str(message.blocks) else None

        updated = await eventually(expired, timeout=20)
        assert updated is not None and not updated.action_ids()


async def test_buttons_posted_before_a_restart_still_work_after_it(
    database_url: str, pipelines_dir: Path, fake: FakeSlack, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker, timeout="timeout: 3600"))
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        run = await start(slack)
        gate = await gate_message(slack)
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        assert await run_status(run.id) == RunStatus.WAITING_APPROVAL
        await slack.click(gate, APPROVE_ACTION_ID, CAROL)
        await eventually(lambda: run_status(run.id), lambda s: s == RunStatus.SUCCESS, timeout=20)
        posted_gates = [
            m for m in slack.fake.messages(CHANNEL) if "needs approval" in str(m.blocks)
        ]
    assert len(posted_gates) == 1  # the restart did not post the request again
    assert marker.read_text() == "deployed\n"
