"""REST API on PostgreSQL: Idempotency-Key cost and outage recovery.

``python -m bench.bench_api_resilience``

1. ``POST /api/v1/cicd/executions/`` p50 without a key, with a new key each
   time, and replayed (a key seen before), one client.
2. PostgreSQL stopped and started under the running service, three times:
   how fast a 503 answers while it is down, and how long after the server is
   back the first 200 comes (the service is never restarted).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from ansflow.app import CORE, build_app
from ansflow.settings import load_settings
from api.auth import create_token
from tests.pg_server import ThrowawayPostgres

SECRET = "bench-secret-bench-secret-bench-secret!"
ADMIN = "UBENCH"
REQUESTS = 50
CYCLES = 3
PIPELINE = """\
name: quick
steps:
  - {name: one, run: "true"}
"""
E = "/api/v1/cicd/executions/"


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


async def start(folder: Path, url: str) -> tuple[web.AppRunner, str, web.Application]:
    pipelines = folder / "pipelines"
    pipelines.mkdir()
    (pipelines / "quick.yml").write_text(PIPELINE)
    settings = load_settings(
        {
            "ANSFLOW_DATABASE_URL": url,
            "ANSFLOW_PIPELINES_DIR": str(pipelines),
            "ANSFLOW_JWT_SECRET": SECRET,
            "ANSFLOW_ADMINS": ADMIN,
        }
    )
    app = build_app(settings, workdir=folder)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", app


async def timed_posts(
    http: aiohttp.ClientSession, url: str, key: str | None, fresh: bool
) -> tuple[list[float], list[int]]:
    headers = {"Authorization": f"Bearer {create_token(SECRET, ADMIN, 3600)}"}
    took: list[float] = []
    ids: list[int] = []
    for _ in range(REQUESTS):
        sent = dict(headers)
        if key is not None:
            sent["Idempotency-Key"] = str(uuid.uuid4()) if fresh else key
        began = time.perf_counter()
        async with http.post(url + E, json={"pipeline": "quick"}, headers=sent) as reply:
            body = await reply.json()
            assert reply.status in (200, 201), body
        took.append(time.perf_counter() - began)
        ids.append(body["id"])
    return took, ids


async def bench_keys(http: aiohttp.ClientSession, url: str, app: web.Application) -> None:
    plain, ids = await timed_posts(http, url, None, fresh=False)
    keyed, more = await timed_posts(http, url, "k", fresh=True)
    replayed, same = await timed_posts(http, url, "one-key", fresh=False)
    assert len(set(same)) == 1
    for run_id in [*ids, *more, same[0]]:
        await app[CORE].engine.wait_finished(run_id, timeout=120)
    print(
        f"POST create p50 ({REQUESTS} each, PostgreSQL): no key {ms(statistics.median(plain))}, "
        f"new key {ms(statistics.median(keyed))}, replayed key {ms(statistics.median(replayed))}"
    )


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    headers = {"Authorization": f"Bearer {create_token(SECRET, ADMIN, 3600)}"}
    async with http.get(url + E, headers=headers) as reply:
        await reply.read()
        return reply.status


async def bench_outage(http: aiohttp.ClientSession, url: str, pg: ThrowawayPostgres) -> None:
    answers: list[float] = []
    recoveries: list[float] = []
    for _ in range(CYCLES):
        await asyncio.to_thread(pg.halt, "fast")
        for _ in range(10):
            began = time.perf_counter()
            assert await status_of(http, url) == 503
            answers.append(time.perf_counter() - began)
        await asyncio.to_thread(pg.resume)
        back = time.perf_counter()
        for _ in range(1500):  # at most ~30 s
            if await status_of(http, url) == 200:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the service did not recover")
        recoveries.append(time.perf_counter() - back)
    print(
        f"PostgreSQL down: 503 answered in p50 {ms(statistics.median(answers))}; "
        f"first 200 after the server is back: median {ms(statistics.median(recoveries))}, "
        f"max {ms(max(recoveries))} ({CYCLES} cycles, no restart of the service)"
    )


async def main() -> None:
    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as folder:
        url = pg.create_database("bench_resilience")
        runner, base, app = await start(Path(folder), url)
        try:
            async with aiohttp.ClientSession() as http:
                await bench_keys(http, base, app)
                await bench_outage(http, base, pg)
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
