from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.helpers import make_settings, serving


async def test_healthz_reports_database_reachable(database_url: str, pipelines_dir: Path) -> None:
    async with (
        serving(make_settings(database_url, pipelines_dir)) as server,
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
        assert {k: body[k] for k in ("status", "database")} == {"status": "ok", "database": True}
        assert body["replica"]  # which replica answered


async def test_metrics_count_runs_by_pipeline_and_status(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    from engine.permissions import Actor
    from engine.runner import RunRequest
    from tests.helpers import write_pipeline

    write_pipeline(pipelines_dir, "m", "name: m\nsteps:\n  - {name: a, run: 'true'}\n")
    async with serving(make_settings(sqlite_url, pipelines_dir)) as server:
        engine = server.core.engine
        run = await engine.start_run(RunRequest("m", {}, Actor("cli:t", trusted=True)))
        await engine.wait_finished(run.id, timeout=20)
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as response:
            text = await response.text()
    assert response.status == 200
    assert 'ansflow_runs_finished_total{pipeline="m",status="success"} 1.0' in text
    assert 'ansflow_steps_finished_total{kind="run",status="success"} 1.0' in text
