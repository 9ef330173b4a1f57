"""Faults across real replicas: kill -9 while an approval waits or a Slack post is in flight,
and PostgreSQL stopped and started under two replicas mid-run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.views import APPROVE_ACTION_ID
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import write_pipeline
from tests.pg_server import ThrowawayPostgres
from tests.replicas import (
    LEASE_SECONDS,
    Replicas,
    gone,
    kill_group,
    posts_per_row,
    replica_set,
    roots_by_run,
)
from tests.slack_signing import ALICE, BOB, CHANNEL, run_of

pytestmark = pytest.mark.postgres

TAKE_OVER_LIMIT = 3 * LEASE_SECONDS + 10


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.delay_visibility(0.2)
        yield fake


def gated(marker: Path, timeout: str = "") -> str:
    return f"""\
name: gated
steps:
  - name: Build
    run: echo built
  - name: Approve
    approval:
      approvers: [{BOB}]
      {timeout}
  - name: Deploy
    run: "echo $ANSFLOW_RUN_ID >> '{marker}'"
"""


def completions(fake: FakeSlack, run_id: int) -> list[StoredMessage]:
    return [m for m in fake.messages(CHANNEL) if m.reply_broadcast and run_of(m) == run_id]


async def gate_message(group: Replicas) -> StoredMessage:
    async def probe() -> list[StoredMessage]:
        return [
            m
            for m in group.slack.messages(CHANNEL)
            if m.is_reply and APPROVE_ACTION_ID in m.action_ids()
        ]

    (found,) = await group.until(probe, what="the gate's Approve button")
    return found


async def slash_run(group: Replicas, at: int, text: str) -> int:
    before = set(await group.db.run_ids())
    status, _ = await group.command(at, text)
    assert status == 200
    ids = await group.until(
        group.db.run_ids, lambda now: len(set(now) - before) >= 1, what="the new run"
    )
    (run_id,) = set(ids) - before
    return run_id


async def test_kill_9_while_waiting_for_approval_the_click_at_the_survivor_moves_it(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        run_id = await slash_run(group, 0, "run gated")
        await group.step_reaches(run_id, "Approve", ["waiting_approval"])
        gate = await gate_message(group)
        await group.kill9(0)
        status, _ = await group.click(1, gate, APPROVE_ACTION_ID, BOB)
        assert status == 200
        run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT)
        assert run["status"] == "success", (run["status"], run["reason"])
        assert marker.read_text().splitlines() == [str(run_id)]
        await group.outbox_drained()
        assert len(completions(slack, run_id)) == 1
        decided = next(m for m in slack.messages(CHANNEL) if m.ts == gate.ts)
        assert APPROVE_ACTION_ID not in decided.action_ids()  # the decision replaced the buttons


async def test_kill_9_while_waiting_for_approval_its_timeout_still_fires_once(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "deployed"
    write_pipeline(pipelines_dir, "gated", gated(marker, timeout="timeout: 6"))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, count=3) as group:
        run_id = await slash_run(group, 0, "run gated")
        await group.step_reaches(run_id, "Approve", ["waiting_approval"])
        await group.kill9(0)
        run = await group.finished(run_id, timeout=6 + TAKE_OVER_LIMIT)
        assert run["status"] == "failed"
        step = await group.db.step(run_id, "Approve")
        assert "timed out" in str(step["reason"]), step["reason"]
        outcomes = await group.db.fetch("SELECT outcome FROM approval WHERE run_id = $1", run_id)
        assert [r["outcome"] for r in outcomes] == ["timed_out"]
        assert not marker.exists()
        await group.outbox_drained()
        assert len(completions(slack, run_id)) == 1
        assert all(n == 1 for n in posts_per_row(slack).values()), posts_per_row(slack)


async def test_kill_9_with_a_slack_post_in_flight_the_survivor_delivers_each_message_once(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "one", "name: one\nsteps:\n  - {name: only, run: 'echo ok'}\n")
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, start=False) as group:
        await group.start(0)
        # Slack takes the first post at once but its answer never reaches replica 0.
        slack.delay(120.0, method="chat.postMessage")
        runs = [await slash_run(group, 0, "run one") for _ in range(3)]

        async def calls() -> int:
            return len(slack.calls_for("chat.postMessage"))

        await group.until(calls, lambda n: n >= 1, what="the first post")
        slack.delay(0.0, method="chat.postMessage")
        await group.start(1)  # alive while replica 0 still waits for its answer
        for run_id in runs:
            assert (await group.finished(run_id))["status"] == "success"
        await group.kill9(0)

        async def delivered() -> int:
            return sum(len(completions(slack, r)) for r in runs)

        await group.until(delivered, lambda n: n >= len(runs), timeout=40, what="completions")
        await group.outbox_drained(timeout=TAKE_OVER_LIMIT)
        assert all(n == 1 for n in posts_per_row(slack).values()), posts_per_row(slack)
        roots = roots_by_run(slack, CHANNEL)
        assert {run: len(found) for run, found in roots.items()} == {r: 1 for r in runs}
        assert Counter(run_of(m) for m in slack.messages(CHANNEL) if m.reply_broadcast) == {
            r: 1 for r in runs
        }
        for run_id in runs:
            (root,) = roots[run_id]
            assert "succeeded" in root.text
            row = await group.db.run(run_id)
            assert row is not None and row["thread_ts"] == root.ts


# -- PostgreSQL outage -----------------------------------------------------------------------------


@pytest.fixture
def own_pg() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL of this test alone: it is stopped and started mid-run."""
    if not ThrowawayPostgres.available():
        pytest.skip("PostgreSQL binaries not found")
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


SLOW_END = """\
name: outage
steps:
  - name: work
    run: "sleep 4; echo finished-during-outage"
  - name: after
    run: echo after
"""


async def statuses_during_outage(group: Replicas, run_id: int) -> list[tuple[int, object]]:
    replies = []
    for index in (0, 1):
        replies.append(await group.api(index, "GET", f"/api/v1/cicd/executions/{run_id}/"))
        replies.append(await group.api(index, "GET", "/api/v1/cicd/executions/"))
        replies.append((await group.health(index), None))
    return replies


async def test_postgres_stopped_mid_run_keeps_the_step_outcome_and_the_run_finishes(
    tmp_path: Path, own_pg: ThrowawayPostgres, pipelines_dir: Path, slack: FakeSlack
) -> None:
    own_pg.create_database("outage")
    url = own_pg.url("outage")
    write_pipeline(pipelines_dir, "outage", SLOW_END)
    async with replica_set(tmp_path, url, pipelines_dir, slack) as group:
        run_id = await slash_run(group, 0, "run outage")
        await group.step_reaches(run_id, "work", ["running"])

        async def pid() -> object:
            return (await group.db.step(run_id, "work"))["external_id"]

        pgid = int(str(await group.until(pid, what="the step's pid")))
        await group.db.close()
        try:
            await asyncio.to_thread(own_pg.halt)
            down_at = time.monotonic()
            replies = await statuses_during_outage(group, run_id)
            assert [status for status, _ in replies] == [503] * len(replies), replies
            assert all(isinstance(body, dict) for status, body in replies[:2]), replies
            began = time.monotonic()
            status, _ = await group.command(1, "run outage")
            assert status == 200 and time.monotonic() - began < 3.0

            async def told() -> list[str]:
                return [e.text for e in slack.ephemerals if e.user == ALICE]

            (answer,) = await group.until(told, what="a private answer during the outage")
            assert "again" in answer.lower(), answer
            assert await gone(pgid, timeout=15), "the step did not end during the outage"
            # The step has ended while the database was away; the outage outlasts a lease.
            await asyncio.sleep(max(0.0, down_at + 2 * LEASE_SECONDS + 1 - time.monotonic()))
            assert [s for s, _ in await statuses_during_outage(group, run_id)] == [503] * 6
        finally:
            await asyncio.to_thread(own_pg.resume)
        run = await group.finished(run_id, timeout=40)
        assert run["status"] == "success", (run["status"], run["reason"], group.logs())
        step = await group.db.step(run_id, "work")
        assert step["status"] == "success"
        assert "finished-during-outage" in step["log"]
        assert step["attempt"] == 1
        assert (await group.execution(1, run_id))["status"] == "success"
        for index in (0, 1):
            assert await group.health(index) == 200
        assert await group.db.run_ids() == [run_id]  # the command refused meanwhile made none
        kill_group(pgid)
