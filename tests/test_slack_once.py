"""Each signed Slack request acts once; with the database gone, Slack still gets its answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.form_views import FormContext, parameter_form
from bot.once import PRUNE_EVERY, RequestLedger, Seen, request_key
from bot.views import CANCEL_ACTION_ID
from storage.models import Run, SeenEvent
from storage.runs import now
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.pg_server import ThrowawayPostgres
from tests.slack_interactive import submission_body, submit
from tests.slack_signing import (
    ALICE,
    CHANNEL,
    SECRET,
    SlackHarness,
    click_body,
    command_body,
    signed_headers,
    slack_server,
)

QUICK = """\
name: quick
parameters:
  env: {required: true, choices: [staging, production]}
steps:
  - name: Only
    run: echo quick
"""
SLOW = """\
name: slow
steps:
  - name: Wait
    run: sleep 300
"""
DOWN = "The service cannot reach its database right now; try again shortly."


@pytest.fixture
async def slack(
    database_url: str, pipelines_dir: Path, fake: FakeSlack
) -> AsyncIterator[SlackHarness]:
    write_pipeline(pipelines_dir, "quick", QUICK)
    async with slack_server(database_url, pipelines_dir, fake) as harness:
        yield harness


async def settled(slack: SlackHarness) -> None:
    await slack.server.core.engine.run_until_idle()


async def test_the_same_signed_command_ten_times_makes_one_run(slack: SlackHarness) -> None:
    body = command_body("run quick env=staging")
    headers = signed_headers(body)
    answers = await asyncio.gather(*[slack.post(body, headers) for _ in range(10)])
    assert answers == [(200, "")] * 10

    async def one() -> int:
        return await Run.all().count()

    await eventually(one, ready=lambda n: n == 1, timeout=10)
    await settled(slack)
    assert await Run.all().count() == 1


async def test_a_retry_with_new_headers_acts_once(slack: SlackHarness) -> None:
    body = command_body("run quick env=production")
    assert await slack.post(body, signed_headers(body)) == (200, "")
    for attempt in (1, 2, 3):
        # Resent later: a new timestamp and signature, the same body.
        headers = signed_headers(body, timestamp=int(time.time()) + attempt)
        headers |= {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"}
        assert await slack.post(body, headers) == (200, "")

    async def one() -> int:
        return await Run.all().count()

    await eventually(one, ready=lambda n: n == 1, timeout=10)
    await settled(slack)
    assert await Run.all().count() == 1
    assert await SeenEvent.all().count() == 1


async def test_the_same_submission_twice_makes_one_run(slack: SlackHarness) -> None:
    await slack.command("run quick")

    async def opened() -> list[object]:
        return list(slack.fake.opened_views)

    [view] = await eventually(opened, timeout=10)
    body = submission_body(view.view, {"param:env": "staging"})  # type: ignore[attr-defined]
    headers = signed_headers(body)
    assert [await slack.post(body, headers) for _ in range(3)] == [(200, "")] * 3

    async def one() -> int:
        return await Run.all().count()

    await eventually(one, ready=lambda n: n == 1, timeout=10)
    await settled(slack)
    assert await Run.all().count() == 1


async def test_two_commands_with_the_same_text_are_two_runs(slack: SlackHarness) -> None:
    await slack.command("run quick env=staging")
    await slack.command("run quick env=staging")

    async def two() -> int:
        return await Run.all().count()

    await eventually(two, ready=lambda n: n == 2, timeout=10)


@pytest.mark.postgres
async def test_database_down_still_answers_slack_privately_within_3s(
    pipelines_dir: Path, fake: FakeSlack
) -> None:
    if not ThrowawayPostgres.available():
        pytest.skip("PostgreSQL binaries not found")
    write_pipeline(pipelines_dir, "quick", QUICK)
    write_pipeline(pipelines_dir, "slow", SLOW)
    pg = ThrowawayPostgres()
    await asyncio.to_thread(pg.start)
    try:
        url = await pg.acreate_database(f"t_{uuid.uuid4().hex[:12]}")
        async with slack_server(url, pipelines_dir, fake) as slack:
            await slack.command("run slow")

            async def card() -> object:
                roots = slack.roots()
                return roots[0] if roots and CANCEL_ACTION_ID in roots[0].action_ids() else None

            root = await eventually(card, timeout=20)
            await asyncio.to_thread(pg.stop)

            async def told() -> list[str]:
                return slack.ephemerals_for(ALICE)

            started = time.monotonic()
            assert await slack.command("run quick env=staging") == (200, "")
            assert time.monotonic() - started < 3.0
            assert await eventually(told, timeout=15) == [DOWN]

            started = time.monotonic()
            body = click_body(root, CANCEL_ACTION_ID, ALICE)  # type: ignore[arg-type]
            assert await slack.post(body, signed_headers(body)) == (200, "")
            assert time.monotonic() - started < 3.0
            await eventually(told, lambda texts: texts == [DOWN] * 2, timeout=15)

            form = parameter_form(
                slack.server.core.engine.source.get("quick"),
                FormContext("quick", ALICE, CHANNEL),
                SECRET.encode(),
            )
            assert form is not None
            started = time.monotonic()
            status, answer = await submit(slack, form, {"param:env": "staging"})
            assert (status, answer) == (200, None) and time.monotonic() - started < 3.0
            await eventually(told, lambda texts: texts == [DOWN] * 3, timeout=15)
    finally:
        await asyncio.to_thread(pg.stop)


async def test_keys_are_per_delivery_and_old_ones_are_pruned(db: str) -> None:
    event = {"type": "event_callback", "event_id": "Ev01", "event": {"type": "app_home_opened"}}
    assert request_key(event) == "Ev01"
    assert request_key({"command": "/ansflow", "trigger_id": "1"}) == request_key(
        {"trigger_id": "1", "command": "/ansflow"}
    )
    assert request_key({"trigger_id": "1"}) != request_key({"trigger_id": "2"})
    ledger = RequestLedger()
    assert await ledger.first_time("old") == Seen.NEW
    assert await ledger.first_time("old") == Seen.DUPLICATE
    await SeenEvent.filter(event_id="old").update(seen_at=now() - timedelta(hours=2))
    for i in range(PRUNE_EVERY):
        assert await ledger.first_time(f"k{i}") == Seen.NEW
    assert not await SeenEvent.filter(event_id="old").exists()
    assert await SeenEvent.all().count() == PRUNE_EVERY
