"""The seed system's own measurement: ``python -m bench.bench_seed [--vs COMMAND]``.

One client POSTs an execution of a pipeline of two ``echo`` steps, then GETs
it every 5 ms until it is done; the figure is the time from the POST to the
GET that sees it done (median of ``RUNS`` runs after a warm-up), and the
engine time, the run's ``started_at`` → ``finished_at``. On SQLite and on a
throwaway PostgreSQL with production durability (fsync on).

``--vs COMMAND`` serves another ``ansflow`` (an older build, say) beside this
one and alternates runs between the two, so that a change of the shared
machine's speed weighs on both alike; it prints both medians and the median
of the ratios of runs taken one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.serve_proc import (
    ANSFLOW,
    DONE,
    bearer,
    machine_note,
    median,
    ms,
    on_sqlite_and_postgres,
    on_sqlite_and_postgres_databases,
    other_build,
    post_quick,
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


async def measure_pair(label: str, urls: list[str], folder: Path, other: str) -> None:
    """This build and ``other``, a run on each in turn (the first of each pair alternates)."""
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for name, url, command in (("this", urls[0], ANSFLOW), ("other", urls[1], other)):
            where = folder / name
            where.mkdir()
            pipelines = write_pipelines(where)
            servers.append(await stack.enter_async_context(serving(where, url, pipelines, command)))
        headers = bearer()
        totals: list[list[float]] = [[], []]
        engines: list[list[float]] = [[], []]
        async with aiohttp.ClientSession() as http:
            for _ in range(WARMUP):
                for server in servers:
                    await one_run(http, server.url, headers)
            for i in range(RUNS):
                for k in (0, 1) if i % 2 == 0 else (1, 0):
                    took, engine = await one_run(http, servers[k].url, headers)
                    totals[k].append(took)
                    engines[k].append(engine)
    ratios = [other_took / took for took, other_took in zip(*totals, strict=True)]
    for k, name in enumerate(("this build", f"vs {other}")):
        print(
            f"seed measurement, {label}, {name}: POST→done median {ms(median(totals[k]))} "
            f"(min {ms(min(totals[k]))}, n={RUNS}); engine time median {ms(median(engines[k]))}",
            flush=True,
        )
    times = median(ratios)
    print(f"seed measurement, {label}: the other takes {times:.2f} times as long", flush=True)


async def main(argv: list[str] | None = None) -> None:
    print(machine_note(), flush=True)
    other = other_build(argv or [])
    if other is None:
        await on_sqlite_and_postgres("seed measurement", "seed", measure)
        return

    async def pair(label: str, urls: list[str], folder: Path) -> None:
        await measure_pair(label, urls, folder, other)

    await on_sqlite_and_postgres_databases("seed measurement", ["seed_this", "seed_other"], pair)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
