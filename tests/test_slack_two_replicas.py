"""Two real ``ansflow serve`` processes on one PostgreSQL: a request acts once, whichever
replica gets it; a double click on Rerun split across replicas starts one run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.views import RERUN_ACTION_ID
from storage.models import Run
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import eventually, write_pipeline
from tests.pg_server import ThrowawayPostgres
from tests.slack_signing import (
    ALICE,
    CHANNEL,
    click_body,
    command_body,
    run_of,
    signed_headers,
    slack_env,
)
from tests.test_crash_restart import database, servers

pytestmark = pytest.mark.postgres

QUICK = """\
name: quick
parameters:
  who: {default: nobody}
steps:
  - name: Only
    run: echo "hello $who"
"""


@pytest.fixture
async def pg_db(pg_server: ThrowawayPostgres) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await pg_server.acreate_database(name)
    yield url
    await pg_server.adrop_database(name)


async def test_requests_and_double_clicks_act_once_across_replicas(
    tmp_path: Path, pipelines_dir: Path, fake: FakeSlack, pg_db: str
) -> None:
    write_pipeline(pipelines_dir, "quick", QUICK)
    env = {
        **slack_env(fake),
        "ANSFLOW_DATABASE_URL": pg_db,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
    }
    async with servers(tmp_path, env) as group:
        first = await group.start()
        second = await group.start()
        replicas = [first, second]

        async def post(index: int, body: str, headers: dict[str, str]) -> int:
            served = replicas[index % 2]
            async with group.http.post(
                f"{served.url}/slack/events", data=body, headers=headers
            ) as reply:
                return reply.status

        async with database(pg_db):
            body = command_body("run quick who=twice")
            headers = signed_headers(body)
            statuses = await asyncio.gather(*[post(i, body, headers) for i in range(10)])
            assert statuses == [200] * 10

            async def done() -> list[Run]:
                return await Run.filter(status="success")

            [run] = await eventually(done, timeout=30)

            async def card() -> StoredMessage | None:
                found = [
                    m for m in fake.messages(CHANNEL) if not m.is_reply and run_of(m) == run.id
                ]
                return found[0] if found and RERUN_ACTION_ID in found[0].action_ids() else None

            root = await eventually(card, timeout=30)
            assert root is not None
            clicks = [click_body(root, RERUN_ACTION_ID, ALICE) for _ in range(6)]
            statuses = await asyncio.gather(
                *[post(i, b, signed_headers(b)) for i, b in enumerate(clicks)]
            )
            assert statuses == [200] * 6

            async def refusals() -> list[str]:
                return [e.text for e in fake.ephemerals if e.user == ALICE]

            await eventually(refusals, lambda texts: len(texts) == 5, timeout=20)

            async def reruns() -> list[Run]:
                return await Run.filter(rerun_of=run.id)

            [rerun] = await eventually(reruns, timeout=20)
            await eventually(done, lambda runs: len(runs) == 2, timeout=30)
            assert await Run.all().count() == 2
            assert rerun.parameters == {"who": "twice"} and rerun.triggered_by == ALICE
