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
        assert await response.json() == {"status": "ok", "database": True}
