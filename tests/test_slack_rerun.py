"""The Rerun button on a finished run's card, pressed through the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.views import RERUN_ACTION_ID
from storage.models import Run, SlackClaim
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import eventually, write_pipeline
from tests.slack_signing import (
    ALICE,
    BOB,
    CHANNEL,
    SlackHarness,
    click_body,
    signed_headers,
    slack_server,
)

FAILING = """\
name: fail-svc
parameters:
  who: {default: nobody}
steps:
  - name: Compile
    run: 'echo "compiling for $who"; exit 3'
"""
ALICE_ONLY = f"""\
name: alice-only
allowed_users: [{ALICE}]
steps:
  - name: Ship
    run: echo shipped
"""


@pytest.fixture
async def slack(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "fail-svc", FAILING)
    write_pipeline(pipelines_dir, "alice-only", ALICE_ONLY)
    async with slack_server(database_url, pipelines_dir, fake) as harness:
        yield harness


async def finished_card(slack: SlackHarness, run_id: int) -> StoredMessage:
    async def probe() -> StoredMessage | None:
        card = slack.root_of(run_id)
        return card if card is not None and RERUN_ACTION_ID in card.action_ids() else None

    card = await eventually(probe, timeout=30)
    assert card is not None
    return card


async def ran(slack: SlackHarness, text: str, user: str = ALICE) -> Run:
    before = await Run.all().count()
    await slack.command(text, user=user)

    async def probe() -> Run | None:
        runs = await Run.all().order_by("id")
        return runs[-1] if len(runs) > before else None

    run = await eventually(probe, timeout=10)
    assert run is not None
    return run


async def private_reply(slack: SlackHarness, user: str, count: int = 1) -> str:
    async def probe() -> list[str]:
        return slack.ephemerals_for(user)

    return (await eventually(probe, ready=lambda v: len(v) >= count, timeout=10))[count - 1]


async def test_rerun_repeats_the_parameters_as_the_presser_and_names_the_run(
    slack: SlackHarness,
) -> None:
    first = await ran(slack, "run fail-svc who=world")
    card = await finished_card(slack, first.id)
    assert "Failed at step *Compile*" in str(card.blocks)
    await slack.click(card, RERUN_ACTION_ID, BOB)

    async def second() -> Run | None:
        return await Run.filter(rerun_of=first.id).first()

    rerun = await eventually(second, timeout=10)
    assert rerun is not None
    assert (rerun.pipeline, rerun.parameters) == ("fail-svc", {"who": "world"})
    assert (rerun.triggered_by, rerun.channel_id, rerun.source) == (BOB, CHANNEL, "slack")
    new_card = await finished_card(slack, rerun.id)
    assert f"rerun of #{first.id}" in str(new_card.blocks)
    assert f"<@{BOB}>" in str(new_card.blocks)
    assert slack.ephemerals_for(BOB) == []
    await slack.command(f"status {rerun.id}", user=BOB)
    await private_reply(slack, BOB)
    [detail] = [e for e in slack.fake.ephemerals if e.user == BOB]
    assert f"rerun of #{first.id}" in str(detail.blocks)


async def test_a_refused_rerun_is_private_and_starts_nothing(slack: SlackHarness) -> None:
    first = await ran(slack, "run alice-only")
    card = await finished_card(slack, first.id)
    await slack.click(card, RERUN_ACTION_ID, BOB)
    assert "You are not allowed to run `alice-only`" in await private_reply(slack, BOB)
    assert await Run.all().count() == 1
    assert await SlackClaim.all().count() == 0  # the refusal keeps no claim


async def test_a_double_click_starts_one_run(slack: SlackHarness) -> None:
    first = await ran(slack, "run fail-svc")
    card = await finished_card(slack, first.id)
    bodies = [click_body(card, RERUN_ACTION_ID, ALICE) for _ in range(5)]
    answers = await asyncio.gather(*[slack.post(b, signed_headers(b)) for b in bodies])
    assert [status for status, _ in answers] == [200] * 5
    refusals = [await private_reply(slack, ALICE, n) for n in range(1, 5)]
    assert all("Rerun" in r or "already reran" in r for r in refusals), refusals

    async def reruns() -> int:
        return await Run.filter(rerun_of=first.id).count()

    # The press that won starts its run after Slack's ack, while the others are refused.
    await eventually(reruns, ready=lambda n: n >= 1, timeout=10)
    await slack.server.core.engine.run_until_idle()
    assert await reruns() == 1


async def test_rerun_of_a_pipeline_removed_meanwhile(
    slack: SlackHarness, pipelines_dir: Path
) -> None:
    first = await ran(slack, "run fail-svc")
    card = await finished_card(slack, first.id)
    (pipelines_dir / "fail-svc.yml").unlink()
    await slack.click(card, RERUN_ACTION_ID, ALICE)
    assert "There is no pipeline named `fail-svc`" in await private_reply(slack, ALICE)
    assert await Run.all().count() == 1
