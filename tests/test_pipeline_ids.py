"""Stable pipeline ids: files added, removed and added again never move an id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.pipeline_ids import pipeline_ids
from storage.db import close_db, open_db
from storage.models import PipelineRecord
from tests.api_support import api_server
from tests.helpers import write_pipeline

E = "/api/v1/cicd/executions/"


def simple(name: str) -> str:
    return f"name: {name}\nsteps:\n  - name: s\n    run: echo {name}\n"


async def listed(api: object) -> dict[str, int]:
    reply = await api.call("GET", "/api/v1/pipelines/")  # type: ignore[attr-defined]
    assert reply.status == 200
    return {p["name"]: p["id"] for p in reply.body["results"]}


async def test_ids_survive_a_file_that_sorts_first_and_a_removal(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "beta", simple("beta"))
    write_pipeline(pipelines_dir, "gamma", simple("gamma"))
    async with api_server(database_url, pipelines_dir) as api:
        before = await listed(api)
        assert before == {"beta": 1, "gamma": 2}
        write_pipeline(pipelines_dir, "alpha", simple("alpha"))  # sorts first
        after = await listed(api)
        assert after == {"alpha": 3, "beta": 1, "gamma": 2}
        # pipeline_id 1 still starts beta, not the new first file.
        reply = await api.call("POST", E, json={"pipeline_id": 1})
        assert reply.status == 201 and reply.body["pipeline"] == "beta"
        await api.wait_finished(reply.body["id"])
        (pipelines_dir / "beta.yml").unlink()
        assert await listed(api) == {"alpha": 3, "gamma": 2}
        gone = await api.call("POST", E, json={"pipeline_id": 1})
        assert gone.status == 404
        write_pipeline(pipelines_dir, "beta", simple("beta"))
        assert await listed(api) == {"alpha": 3, "beta": 1, "gamma": 2}
        again = await api.call("POST", E, json={"pipeline_id": 1})
        assert again.status == 201 and again.body["pipeline"] == "beta"
        await api.wait_finished(again.body["id"])


async def test_pipeline_id_of_a_pipeline_never_listed_is_given_at_once(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "only", simple("only"))
    async with api_server(sqlite_url, pipelines_dir) as api:
        reply = await api.call("POST", E, json={"pipeline_id": 1})
        assert reply.status == 201 and reply.body["pipeline"] == "only"
        await api.wait_finished(reply.body["id"])


async def test_names_seen_at_once_by_many_callers_get_one_id_each(database_url: str) -> None:
    await open_db(database_url)
    try:
        names = [f"p{i}" for i in range(20)]
        results = await asyncio.gather(*(pipeline_ids(names) for _ in range(8)))
        assert all(r == results[0] for r in results)
        assert sorted(results[0].values()) == sorted(set(results[0].values()))
        assert await PipelineRecord.all().count() == 20
    finally:
        await close_db()
