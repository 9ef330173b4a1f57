"""Slack and triggers through the real server: next fire in /ansflow list, queued cards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.schedules import next_fire_at
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import ALICE, CHANNEL, SlackHarness, slack_server

NIGHTLY = """\
name: nightly
schedule:
  - cron: "15 2 * * *"
    timezone: America/New_York
steps:
  - {name: go, run: 'true'}
"""
GROUPED = """\
name: release
parameters:
  gate: {required: true}
concurrency:
  group: release
steps:
  - name: wait
    run: 'n=0; while [ ! -e "$gate" ] && [ $n -lt 1500 ]; do sleep 0.02; n=$((n+1)); done'
"""


@pytest.fixture
async def slack(sqlite_url: str, pipelines_dir: Path) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "nightly", NIGHTLY)
    write_pipeline(pipelines_dir, "release", GROUPED)
    async with FakeSlack() as fake, slack_server(sqlite_url, pipelines_dir, fake) as harness:
        yield harness


async def test_list_shows_when_a_pipeline_fires_next(slack: SlackHarness) -> None:
    before = datetime.now(UTC)
    await slack.command("list")

    async def shown() -> list[str]:
        return [str(e.blocks) for e in slack.fake.ephemerals if e.user == ALICE]

    [text] = await eventually(shown, timeout=10)
    pipeline = slack.server.core.engine.source.get("nightly")
    expected = next_fire_at(pipeline, before)
    assert expected is not None and expected.astimezone(UTC).minute == 15
    assert f"Next scheduled run: <!date^{int(expected.timestamp())}^" in text
    release_part = text.split("release", 1)[1]
    assert "Next scheduled run" not in release_part


async def test_a_queued_run_card_says_which_run_it_waits_behind(
    slack: SlackHarness, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    await slack.command(f"run release gate={gate}")
    await slack.command(f"run release gate={gate}")

    def cards() -> list[str]:
        return [m.text + str(m.blocks) for m in slack.roots(CHANNEL)]

    async def two_cards() -> list[str]:
        return cards()

    found = await eventually(
        two_cards, lambda c: len(c) == 2 and any("Queued behind #1" in t for t in c)
    )
    assert sum("Queued behind" in t for t in found) == 1
    gate.touch()

    async def finished() -> list[str]:
        return cards()

    done = await eventually(finished, lambda c: sum("succeeded" in t for t in c) == 2, timeout=30)
    assert len(done) == 2  # the queued run kept its one root message
    assert not any("Queued behind" in t for t in done)
