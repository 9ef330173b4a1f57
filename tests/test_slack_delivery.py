"""The outbox under stress: a 429 storm, Slack down, restarts and a crash mid-post.

Every message is delivered, and none twice: counted per outbox row (the
``metadata`` each post carries) and per run in the fake's channels.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from storage.db import close_db, open_db
from storage.models import OutboxMessage, Run
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import SlackHarness, run_of, slack_server

QUICK = """\
name: quick-svc
steps:
  - name: Build
    run: echo built
"""
CHANNELS = ["C0STORM001", "C0STORM002", "C0STORM003", "C0STORM004"]


def posted_rows(fake: FakeSlack) -> Counter[int]:
    """How many times Slack accepted a post of each outbox row."""
    rows: Counter[int] = Counter()
    for call in fake.calls_for("chat.postMessage"):
        if call.ok:
            rows[int(call.args["metadata"]["event_payload"]["row"])] += 1
    return rows


async def delivered(slack: SlackHarness, runs: int, channels: list[str]) -> None:
    """Wait until every run's completion broadcast is in; then check nothing doubled."""

    async def broadcasts() -> int:
        return sum(1 for c in channels for m in slack.fake.messages(c) if m.reply_broadcast)

    await eventually(broadcasts, ready=lambda n: n >= runs, timeout=90, interval=0.1)

    async def pending() -> int:
        return await OutboxMessage.filter(state="pending").count()

    await eventually(pending, ready=lambda n: n == 0, timeout=30, interval=0.1)
    assert await OutboxMessage.filter(state="dead").count() == 0
    seen = 0
    for channel in channels:
        messages = slack.fake.messages(channel)
        roots = Counter(run_of(m) for m in messages if not m.is_reply)
        ends = Counter(run_of(m) for m in messages if m.reply_broadcast)
        assert all(n == 1 for n in roots.values()), roots
        assert all(n == 1 for n in ends.values()), ends
        assert set(roots) == set(ends)
        seen += len(roots)
    assert seen == runs  # each run's root once, in one of the channels
    assert all(n == 1 for n in posted_rows(slack.fake).values())
    sent = await OutboxMessage.filter(state="sent", kind__in=["root_post", "reply"]).count()
    assert sent == len(posted_rows(slack.fake))


async def test_a_429_storm_over_40_concurrent_runs_loses_and_doubles_nothing(
    sqlite_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "quick-svc", QUICK)
    fake.rate_limit_per_channel(max_per_second=10.0, burst=2)
    fake.fail_next("chat.update", status=429, retry_after=1, times=3)
    async with slack_server(sqlite_url, pipelines_dir, fake) as slack:
        answers = await asyncio.gather(
            *[slack.command("run quick-svc", channel=CHANNELS[i % 4]) for i in range(40)]
        )
        assert all(status == 200 for status, _ in answers)
        await delivered(slack, 40, CHANNELS)
        assert await Run.filter(status="success").count() == 40
        assert sum(1 for c in fake.calls_for("chat.postMessage") if c.status == 429) > 0
        for run in await Run.all():
            root = slack.root_of(run.id, run.channel_id or "")
            assert root is not None and "succeeded" in root.text


async def test_slack_down_for_a_while_then_back_delivers_everything_once(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "quick-svc", QUICK)
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        fake.go_down(3.0)
        for _ in range(3):
            status, _ = await slack.command("run quick-svc", channel=CHANNELS[0])
            assert status == 200
        await delivered(slack, 3, CHANNELS[:1])
        assert any(c.status == 503 for c in fake.calls)


async def test_rows_left_by_a_stopped_server_are_sent_once_by_the_next(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "quick-svc", QUICK)
    async with slack_server(database_url, pipelines_dir, fake) as first:
        fake.go_down()
        for _ in range(2):
            await first.command("run quick-svc", channel=CHANNELS[0])

        async def finished() -> int:
            return await Run.filter(status="success").count()

        await eventually(finished, ready=lambda n: n == 2, timeout=20)
        await first.server.core.engine.run_until_idle()
    assert fake.messages(CHANNELS[0]) == []
    fake.come_up()
    async with slack_server(database_url, pipelines_dir, fake) as second:
        await delivered(second, 2, CHANNELS[:1])
        for run in await Run.all():
            root = second.root_of(run.id, CHANNELS[0])
            assert root is not None and run.thread_ts == root.ts


async def test_a_post_in_flight_when_the_server_stopped_is_found_not_doubled(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "quick-svc", QUICK)
    fake.delay(30.0, method="chat.postMessage")  # stored at once, answered late
    async with slack_server(database_url, pipelines_dir, fake) as first:
        await first.command("run quick-svc", channel=CHANNELS[0])

        async def posted() -> int:
            return len(fake.calls_for("chat.postMessage"))

        await eventually(posted, ready=lambda n: n == 1, timeout=20)
        await first.server.core.engine.run_until_idle()
    await open_db(database_url)
    try:
        root = await OutboxMessage.get(kind="root_post")
    finally:
        await close_db()
    assert (root.state, root.attempts, root.last_error) == ("pending", 1, "in flight")
    fake.delay(0.0, method="chat.postMessage")
    async with slack_server(database_url, pipelines_dir, fake) as second:
        await delivered(second, 1, CHANNELS[:1])
        assert fake.calls_for("conversations.history")
        assert posted_rows(fake)[root.id] == 1
        run = await Run.get(id=root.run_id)
        assert run.thread_ts == (await OutboxMessage.get(id=root.id)).result_ts
