"""The seed system's own measurement: ``python -m bench.bench_seed``.

One client POSTs an execution of a pipeline of two ``echo`` steps, then GETs
it every 5 ms until it is done; the figure is the time from the POST to the
GET that sees it done (median of ``RUNS`` runs after a warm-up), and the
engine time, the run's ``started_at`` → ``finished_at``. On SQLite and on a
throwaway PostgreSQL with production durability (fsync on).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.serve_proc import (
    DONE,
    bearer,
    machine_note,
    median,
    ms,
    post_quick,
    postgres_url,
    serving,
    write_pipelines,
)

RUNS = 30
WARMUP = 3
POLL = 0.005


async def one_run(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, float]:
    began = time.perf_counter()
    body = await post_quick(http, url, headers)
    run_id = body["id"]
    deadline = began + 30
    while body["status"] not in DONE:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"run {run_id} not done after 30 s")
        await asyncio.sleep(POLL)
        async with http.get(f"{url}/api/v1/cicd/executions/{run_id}/", headers=headers) as resp:
            body = await resp.json()
    took = time.perf_counter() - began
    if body["status"] != "success":
        raise RuntimeError(f"run {run_id} ended {body['status']}")
    engine = (
        datetime.fromisoformat(body["finished_at"]) - datetime.fromisoformat(body["started_at"])
    ).total_seconds()
    return took, engine


async def measure(label: str, database_url: str, folder: Path) -> None:
    pipelines = write_pipelines(folder)
    async with serving(folder, database_url, pipelines) as server:
        headers = bearer()
        async with aiohttp.ClientSession() as http:
            for _ in range(WARMUP):
                await one_run(http, server.url, headers)
            totals: list[float] = []
            engines: list[float] = []
            for _ in range(RUNS):
                took, engine = await one_run(http, server.url, headers)
                totals.append(took)
                engines.append(engine)
    print(
        f"seed measurement, {label}: POST→done median {ms(median(totals))} "
        f"(min {ms(min(totals))}, max {ms(max(totals))}, n={RUNS}); "
        f"engine time median {ms(median(engines))}",
        flush=True,
    )


async def main(argv: list[str] | None = None) -> None:
    print(machine_note(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        await measure("SQLite", f"sqlite://{Path(folder) / 'seed.db'}", Path(folder))
    with postgres_url("seed") as url, tempfile.TemporaryDirectory() as folder:
        if url is None:
            print("seed measurement, PostgreSQL: skipped (no PostgreSQL programs)")
            return
        await measure("PostgreSQL", url, Path(folder))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
