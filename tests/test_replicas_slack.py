"""Two real replicas behind one Slack app: requests land on either, Slack hears each thing once.

Driven by signed slash commands and clicks at either replica; the fake Slack
makes a posted message visible to conversations.history/replies only 0.2 s
after chat.postMessage answered, as real Slack does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.views import CANCEL_ACTION_ID
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import write_pipeline
from tests.replicas import (
    Replicas,
    gone,
    kill_group,
    peak_per_channel,
    posts_per_row,
    replica_set,
    roots_by_run,
)
from tests.slack_signing import ALICE, CHANNEL, command_body, run_of, signed_headers

pytestmark = pytest.mark.postgres

ONE = "name: one\nsteps:\n  - {name: only, run: 'echo done'}\n"
LONG = (
    "name: long\nsteps:\n  - {name: wait, run: 'sleep 120'}\n  - {name: after, run: 'echo after'}\n"
)
RUNS = 50  # three posts each (card, step reply, completion): 150 messages
CHANNELS = [f"C0LOAD{i:04d}" for i in range(10)]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.delay_visibility(0.2)
        yield fake


def completions(fake: FakeSlack, channel: str) -> Counter[int | None]:
    return Counter(run_of(m) for m in fake.messages(channel) if m.reply_broadcast)


async def test_requests_alternating_between_replicas_post_each_message_once_at_one_pace(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "one", ONE)
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        for i in range(RUNS):
            status, _ = await group.command(i % 2, "run one", channel=CHANNELS[i % len(CHANNELS)])
            assert status == 200
        run_ids = await group.new_runs(RUNS)
        assert len(run_ids) == RUNS
        for run_id in run_ids:
            assert (await group.finished(run_id))["status"] == "success"

        def delivered() -> int:
            return sum(sum(completions(slack, c).values()) for c in CHANNELS)

        async def probe() -> int:
            return delivered()

        await group.until(probe, lambda n: n >= RUNS, timeout=60, interval=0.2, what="completions")
        await group.outbox_drained()
        dead = await group.db.value("SELECT count(*) FROM outbox_message WHERE state = 'dead'")
        assert dead == 0

        twice = {row: n for row, n in posts_per_row(slack).items() if n > 1}
        assert twice == {}, f"{len(twice)} outbox rows posted more than once"
        posts = await group.db.value(
            "SELECT count(*) FROM outbox_message WHERE kind IN ('root_post', 'reply')"
        )
        assert len(posts_per_row(slack)) == posts
        for channel in CHANNELS:
            roots = roots_by_run(slack, channel)
            assert all(len(found) == 1 for found in roots.values()), {
                run: len(found) for run, found in roots.items()
            }
            assert all(n == 1 for n in completions(slack, channel).values())
            for run, (root,) in roots.items():
                assert "succeeded" in root.text, (run, root.text)
        assert sum(len(roots_by_run(slack, c)) for c in CHANNELS) == RUNS
        peaks = peak_per_channel(slack)
        assert max(peaks.values()) <= 10, peaks


@pytest.mark.parametrize("delivery", ["replayed", "retried"])
async def test_the_same_signed_command_delivered_to_both_replicas_starts_one_run(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack, delivery: str
) -> None:
    write_pipeline(pipelines_dir, "one", ONE)
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        body = command_body("run one")
        headers = signed_headers(body)
        if delivery == "replayed":
            sent = [headers] * 10
        else:
            sent = [headers] + [
                {**headers, "X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"}
                for n in (1, 2, 3)
            ]
        replies = await asyncio.gather(
            *(group.slack_post(i % 2, body, h) for i, h in enumerate(sent))
        )
        assert all(status == 200 for status, _ in replies), replies
        await group.new_runs(1)

        async def seen() -> tuple[int, list[int]]:
            return sum(completions(slack, CHANNEL).values()), await group.db.run_ids()

        # Until Slack heard of the first run's end (every delivery has long been
        # handled by then), or a second run shows up.
        _, runs = await group.until(
            seen, lambda s: s[0] >= 1 or len(s[1]) > 1, timeout=30, what="completion"
        )
        assert len(runs) == 1, f"{len(sent)} deliveries of one request made runs {runs}"
        assert len(roots_by_run(slack, CHANNEL)) == 1


async def card_with_cancel(group: Replicas, run_id: int) -> StoredMessage:
    async def probe() -> list[StoredMessage]:
        return [
            m
            for m in roots_by_run(group.slack, CHANNEL).get(run_id, [])
            if CANCEL_ACTION_ID in m.action_ids()
        ]

    (card,) = await group.until(probe, what="run card with a Cancel button")
    return card


@pytest.mark.parametrize("how", ["click", "rest"])
async def test_a_cancel_at_the_other_replica_stops_the_step_process(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack, how: str
) -> None:
    write_pipeline(pipelines_dir, "long", LONG)
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        status, _ = await group.command(0, "run long")  # replica 0 starts and runs the step
        assert status == 200
        (run_id,) = await group.new_runs(1)
        step = await group.step_reaches(run_id, "wait", ["running"])

        async def pid() -> str | None:
            return (await group.db.step(run_id, "wait"))["external_id"]

        pgid = int(await group.until(pid, what="the step's pid"))
        try:
            if how == "click":
                card = await card_with_cancel(group, run_id)
                status, _ = await group.click(1, card, CANCEL_ACTION_ID, ALICE)
                assert status == 200
            else:
                status, body = await group.api(
                    1, "POST", f"/api/v1/cicd/executions/{run_id}/cancel/"
                )
                assert status in (200, 202), (status, body)
            run = await group.finished(run_id)
            assert run["status"] == "cancelled"
            ended = await group.db.step(run_id, "wait")
            assert ended["status"] == "cancelled"
            assert (await group.db.step(run_id, "after"))["status"] == "skipped"
            assert await gone(pgid), f"the step's process group {pgid} still runs"
            assert step["id"] == ended["id"]
        finally:
            kill_group(pgid)


async def test_a_rest_create_with_an_idempotency_key_at_both_replicas_makes_one_run(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "one", ONE)
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        key = {"Idempotency-Key": "deploy-2026-12-01-0001"}
        body = {"pipeline": "one"}
        path = "/api/v1/cicd/executions/"
        replies = await asyncio.gather(
            *(group.api(i % 2, "POST", path, headers=key, json=body) for i in range(6))
        )
        assert sorted(status for status, _ in replies) == [200] * 5 + [201], replies
        assert len({reply["id"] for _, reply in replies}) == 1
        again = await group.api(1, "POST", path, headers=key, json=body)
        assert again[0] == 200 and again[1]["id"] == replies[0][1]["id"]
        assert len(await group.db.run_ids()) == 1
