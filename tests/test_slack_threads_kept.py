"""The notifier remembers only recent runs' threads; older runs still reply in their own."""

from __future__ import annotations

from pathlib import Path

from bot.setup import SLACK_BOT
from storage.models import OutboxMessage
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import CHANNEL, run_of, slack_server

QUICK = """\
name: quick-svc
steps:
  - name: Build
    run: echo built
"""
RUNS = 6


async def test_threads_kept_are_bounded_and_replies_stay_in_their_run_thread(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> None:
    write_pipeline(pipelines_dir, "quick-svc", QUICK)
    async with slack_server(database_url, pipelines_dir, fake) as slack:
        notifier = slack.server.app[SLACK_BOT].notifier
        notifier._threads.size = 2
        for _ in range(RUNS):
            status, _ = await slack.command("run quick-svc", channel=CHANNEL)
            assert status == 200

        async def pending() -> int:
            return await OutboxMessage.filter(state="pending").count()

        async def broadcasts() -> int:
            return sum(1 for m in fake.messages(CHANNEL) if m.reply_broadcast)

        await eventually(broadcasts, ready=lambda n: n >= RUNS, timeout=60, interval=0.1)
        await eventually(pending, ready=lambda n: n == 0, timeout=30, interval=0.1)
        kept = len(notifier._threads)
        messages = fake.messages(CHANNEL)
    roots = {run_of(m): m.ts for m in messages if not m.is_reply}
    replies = [m for m in messages if m.is_reply]
    assert len(roots) == RUNS
    assert replies and all(roots[run_of(m)] == m.thread_ts for m in replies)
    assert sum(1 for m in replies if m.reply_broadcast) == RUNS
    assert kept <= 2
