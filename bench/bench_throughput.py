"""Throughput against real ``ansflow serve`` processes: ``python -m bench.bench_throughput``.

``RUNS`` runs of a pipeline of two ``echo`` steps, POSTed by ``CLIENTS``
concurrent clients; the figure is runs per second from the first POST to the
moment every run is done (one list request every 50 ms watches that), with the
POST latency p50/p95, the server's CPU time per run (from ``/proc``: the
figure a shared machine's neighbours move least), and how busy the whole
machine was meanwhile (a load that leaves the CPUs idle part of the time is
waiting — on commits, on scheduling — not computing). On SQLite, on a throwaway
PostgreSQL with production durability (fsync on), and on two replicas sharing
that PostgreSQL (clients alternate between them; runs that do not end
``success`` are counted).

``--vs COMMAND`` measures this build and another ``ansflow`` (an older build,
say) in turn, ``ROUNDS`` loads each on SQLite and on one PostgreSQL replica,
each load on a fresh server and database, the order alternating (this, other,
other, this, ...); it prints every load and the medians of each build.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp

from bench.serve_proc import (
    ANSFLOW,
    Server,
    bearer,
    busy_share,
    count_runs,
    machine_note,
    machine_ticks,
    ms,
    on_sqlite_and_postgres,
    on_sqlite_and_postgres_databases,
    other_build,
    percentile,
    post_quick,
    postgres_url,
    serving,
    write_pipelines,
)

RUNS = 200
CLIENTS = 20
WATCH_EVERY = 0.05
DEADLINE = 300.0
ROUNDS = 3


class Figures(NamedTuple):
    runs_per_second: float
    post_p50: float
    post_p95: float
    cpu_ms_per_run: float | None = None


async def load(urls: list[str], label: str, servers: list[Server] | None = None) -> Figures:
    headers = bearer()
    latencies: list[float] = []
    per_client = RUNS // CLIENTS

    async def client(http: aiohttp.ClientSession, url: str) -> None:
        for _ in range(per_client):
            began = time.perf_counter()
            await post_quick(http, url, headers)
            latencies.append(time.perf_counter() - began)

    cpu_before = _cpu(servers)
    ticks_before = machine_ticks()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        began = time.perf_counter()
        await asyncio.gather(*[client(http, urls[i % len(urls)]) for i in range(CLIENTS)])
        posted = time.perf_counter() - began
        done = ok = 0
        while time.perf_counter() - began < DEADLINE:
            ok = await count_runs(http, urls[0], headers, "success")
            failed = await count_runs(http, urls[0], headers, "failed")
            cancelled = await count_runs(http, urls[0], headers, "cancelled")
            done = ok + failed + cancelled
            if done >= RUNS:
                break
            await asyncio.sleep(WATCH_EVERY)
        took = time.perf_counter() - began
    cpu_after = _cpu(servers)
    busy = busy_share(ticks_before, machine_ticks())
    cpu_ms = (
        (cpu_after - cpu_before) * 1000 / RUNS
        if cpu_before is not None and cpu_after is not None
        else None
    )
    cpu = f"; server CPU {cpu_ms:.2f} ms a run" if cpu_ms is not None else ""
    not_ok = f", {done - ok} not success" if done != ok else ""
    unfinished = f", {RUNS - done} NOT DONE after {DEADLINE:.0f} s" if done < RUNS else ""
    print(
        f"throughput, {label}: {RUNS} runs by {CLIENTS} clients: {done / took:.0f} runs/s "
        f"(all POSTed in {posted:.2f} s, all done in {took:.2f} s{not_ok}{unfinished}); "
        f"POST p50 {ms(percentile(latencies, 0.5))}, p95 {ms(percentile(latencies, 0.95))}"
        f"{cpu}{busy}",
        flush=True,
    )
    return Figures(done / took, percentile(latencies, 0.5), percentile(latencies, 0.95), cpu_ms)


def _cpu(servers: list[Server] | None) -> float | None:
    """The servers' CPU seconds so far (None when unknown). The watching requests
    count too: they are part of the load."""
    if not servers:
        return None
    used = [server.cpu_seconds() for server in servers]
    return None if any(u is None for u in used) else sum(u for u in used if u is not None)


async def on_one(label: str, database_url: str, folder: Path, command: str = ANSFLOW) -> Figures:
    pipelines = write_pipelines(folder)
    async with serving(folder, database_url, pipelines, command) as server:
        return await load([server.url], label, [server])


async def on_two(database_url: str, folder: Path) -> None:
    pipelines = write_pipelines(folder)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(serving(folder, database_url, pipelines))
        second = await stack.enter_async_context(serving(folder, database_url, pipelines))
        await load([first.url, second.url], "2 replicas on one PostgreSQL", [first, second])


async def pair(label: str, database_urls: list[str], folder: Path, other: str) -> None:
    """``ROUNDS`` loads on this build and on ``other``, in turn (see the module's docstring)."""
    builds = (("this build", ANSFLOW), (f"vs {other}", other))
    measured: list[list[Figures]] = [[], []]
    for i in range(2 * ROUNDS):
        k = (i + i // 2) % 2  # this, other, other, this, this, other, ...
        name, command = builds[k]
        where = folder / f"load-{i}"
        where.mkdir()
        figures = await on_one(f"{label}, {name}", database_urls[i], where, command)
        measured[k].append(figures)
    for (name, _), loads in zip(builds, measured, strict=True):
        cpus = [f.cpu_ms_per_run for f in loads if f.cpu_ms_per_run is not None]
        cpu = f", server CPU {statistics.median(cpus):.2f} ms a run" if cpus else ""
        print(
            f"throughput, {label}, {name}: median of {len(loads)} loads "
            f"{statistics.median(f.runs_per_second for f in loads):.0f} runs/s, "
            f"POST p50 {ms(statistics.median(f.post_p50 for f in loads))}, "
            f"p95 {ms(statistics.median(f.post_p95 for f in loads))}{cpu}",
            flush=True,
        )


async def main(argv: list[str] | None = None) -> None:
    print(machine_note(), flush=True)
    other = other_build(argv or [])
    if other is not None:

        async def loads(label: str, urls: list[str], folder: Path) -> None:
            await pair(label, urls, folder, other)

        names = [f"tp{i}" for i in range(2 * ROUNDS)]
        await on_sqlite_and_postgres_databases("throughput", names, loads)
        return
    if not await on_sqlite_and_postgres("throughput", "tp", on_one):
        return
    with postgres_url("tp2") as url, tempfile.TemporaryDirectory() as folder:
        assert url is not None
        await on_two(url, Path(folder))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
