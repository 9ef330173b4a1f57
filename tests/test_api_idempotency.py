"""``Idempotency-Key`` on execution create: the same key acts once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from storage.models import IdempotencyKey, Run
from tests.api_support import ADMIN, SECRET, api_server, bearer, write_standard
from tests.test_crash_restart import database, servers

E = "/api/v1/cicd/executions/"
BODY = {"pipeline": "simple", "parameters": {"version": "3.1"}}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_ten_concurrent_posts_with_one_key_make_one_run(
    database_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        key = str(uuid.uuid4())
        replies = await asyncio.gather(
            *(api.call("POST", E, json=BODY, headers=keyed(key)) for _ in range(10))
        )
        statuses = sorted(r.status for r in replies)
        assert statuses == [200] * 9 + [201], [(r.status, r.text[:200]) for r in replies]
        ids = {r.body["id"] for r in replies}
        assert len(ids) == 1
        assert await Run.all().count() == 1
        assert await IdempotencyKey.all().count() == 1
        (run_id,) = ids
        for reply in replies:
            assert reply.headers["Location"] == f"{E}{run_id}/"
            assert reply.body["pipeline"] == "simple"
            assert reply.body["parameters"] == {"version": "3.1", "env": "staging"}
            assert (reply.headers.get("Idempotent-Replayed") == "true") == (reply.status == 200)
        await api.wait_finished(run_id)
        # Later, after the run ended: still the same run, in its current state.
        again = await api.call("POST", E, json=BODY, headers=keyed(key))
        assert again.status == 200 and again.body["id"] == run_id
        assert again.body["status"] == "success"
        assert await Run.all().count() == 1


async def test_key_is_per_subject_and_absent_key_always_creates(
    database_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        mine = await api.call("POST", E, json=BODY, headers=keyed("k-1"), user="U222")
        theirs = await api.call("POST", E, json=BODY, headers=keyed("k-1"), user="U333")
        assert (mine.status, theirs.status) == (201, 201)
        assert mine.body["id"] != theirs.body["id"]
        assert theirs.body["triggered_by"] == "U333"
        plain = [await api.call("POST", E, json=BODY) for _ in range(2)]
        assert [p.status for p in plain] == [201, 201]
        assert plain[0].body["id"] != plain[1].body["id"]
        assert await Run.all().count() == 4


async def test_reused_key_with_another_body_is_422_and_creates_nothing(
    database_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        first = await api.call("POST", E, json=BODY, headers=keyed("deploy-42"))
        assert first.status == 201
        other = {"pipeline": "simple", "parameters": {"version": "9.9"}}
        reply = await api.call("POST", E, json=other, headers=keyed("deploy-42"))
        assert reply.status == 422, reply.text
        assert reply.body["error"] == "idempotency_key_reused"
        assert "different request" in reply.body["detail"]
        assert reply.body["execution_id"] == first.body["id"]
        assert await Run.all().count() == 1


async def test_refused_request_records_no_key_and_bad_keys_are_400(
    database_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        wrong = {"pipeline": "simple", "parameters": {"version": "not-a-version"}}
        refused = await api.call("POST", E, json=wrong, headers=keyed("retry-me"))
        assert refused.status == 400, refused.text
        assert await IdempotencyKey.all().count() == 0
        # Corrected, the same key may be used: the refused attempt acted on nothing.
        fixed = await api.call("POST", E, json=BODY, headers=keyed("retry-me"))
        assert fixed.status == 201
        for bad in ["", "   ", "x" * 256, "has space", "tab\tkey"]:
            reply = await api.call("POST", E, json=BODY, headers=keyed(bad))
            assert reply.status == 400, (bad, reply.text)
            assert "Idempotency-Key" in reply.body["detail"]
        assert await Run.all().count() == 1


async def test_two_serve_processes_on_postgres_make_one_run(
    pg_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    write_standard(pipelines_dir)
    env = {
        "ANSFLOW_DATABASE_URL": pg_url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        "ANSFLOW_JWT_SECRET": SECRET,
        "ANSFLOW_ADMINS": ADMIN,
    }
    async with servers(tmp_path, env) as group:
        replicas = [await group.start(), await group.start()]
        headers = {**bearer("U222"), **keyed("across-replicas")}

        async def post(i: int) -> tuple[int, int]:
            url = f"{replicas[i % 2].url}{E}"
            async with group.http.post(url, json=BODY, headers=headers) as reply:
                return reply.status, (await reply.json())["id"]

        answers = await asyncio.gather(*(post(i) for i in range(10)))
        assert sorted(status for status, _ in answers) == [200] * 9 + [201], answers
        assert len({run_id for _, run_id in answers}) == 1
        async with database(pg_url):
            assert await Run.all().count() == 1
