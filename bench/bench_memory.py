"""Memory of live runs in one ``ansflow serve``: ``python -m bench.bench_memory``.

``RUNS`` runs of a pipeline whose first step is an approval gate (with a
timeout, so each gate has its timer armed) are POSTed by ``CLIENTS``
concurrent clients and wait for approval. The server's resident memory
(``VmRSS`` in ``/proc/<pid>/status``; ``VmHWM`` is its peak) is read after a
warm-up, once all of them wait, and again once they ended (half approved,
half cancelled, through the REST API). Target: under 200 MB in total, at most
30 KB per waiting run.

Then ``ENDED_ROUNDS`` rounds of ``ENDED_BATCH`` runs that wait and end: the
memory after each round shows whether what ended runs leave behind is
bounded (flat after the first rounds) or grows with every run.

On SQLite and on a throwaway PostgreSQL with production durability (fsync on).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.serve_proc import (
    ADMIN,
    DONE,
    bearer,
    count_runs,
    machine_note,
    on_sqlite_and_postgres,
    post_quick,
    serving,
    write_pipelines,
)

RUNS = 1000
CLIENTS = 20
WARMUP = 20
ENDED_BATCH = 500
ENDED_ROUNDS = 4
DEADLINE = 600.0
WATCH_EVERY = 0.2
TARGET_TOTAL_MB = 200
TARGET_PER_RUN_KB = 30

GATED = f"""\
name: quick
steps:
  - name: gate
    approval:
      approvers: [{ADMIN}]
      allow_self_approval: true
      timeout: 86400
  - {{name: after, run: "echo approved"}}
"""


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of process ``pid``, in KB (Linux ``/proc``)."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


async def _until(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    statuses: tuple[str, ...],
    wanted: int,
) -> None:
    began = time.monotonic()
    seen = 0
    while time.monotonic() - began < DEADLINE:
        seen = 0
        for status in statuses:
            seen += await count_runs(http, url, headers, status)
        if seen >= wanted:
            return
        await asyncio.sleep(WATCH_EVERY)
    raise RuntimeError(f"only {seen} of {wanted} runs {'/'.join(statuses)} after {DEADLINE:.0f} s")


async def _post_many(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int
) -> list[int]:
    ids: list[int] = []

    async def client(share: int) -> None:
        for _ in range(share):
            ids.append(int((await post_quick(http, url, headers))["id"]))

    shares = [count // CLIENTS + (1 if i < count % CLIENTS else 0) for i in range(CLIENTS)]
    await asyncio.gather(*[client(share) for share in shares if share])
    return ids


async def _end_all(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], ids: list[int]
) -> None:
    """Approve the even ids, cancel the odd ones (both REST paths end gates)."""
    queue = list(ids)

    async def one(run_id: int) -> None:
        action = "approve" if run_id % 2 == 0 else "cancel"
        async with http.post(
            f"{url}/api/v1/cicd/executions/{run_id}/{action}/", headers=headers
        ) as resp:
            body: Any = await resp.json()
            if resp.status not in (200, 202):
                raise RuntimeError(f"{action} of run {run_id} answered {resp.status}: {body}")

    async def client() -> None:
        while queue:
            await one(queue.pop())

    await asyncio.gather(*[client() for _ in range(CLIENTS)])


async def _wave(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int
) -> list[int]:
    """POST ``count`` runs and wait until every one of them waits for approval."""
    ids = await _post_many(http, url, headers, count)
    await _until(http, url, headers, ("waiting_approval",), count)
    return ids


async def _finish(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], ids: list[int], total: int
) -> None:
    await _end_all(http, url, headers, ids)
    await _until(http, url, headers, tuple(sorted(DONE)), total)


async def measure(label: str, database_url: str, folder: Path) -> None:
    pipelines = write_pipelines(folder, GATED)
    async with serving(folder, database_url, pipelines) as server:
        pid = server.process.pid
        headers = bearer()
        url = server.url
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            ended = 0
            warm = await _wave(http, url, headers, WARMUP)
            await _finish(http, url, headers, warm, ended + WARMUP)
            ended += WARMUP
            base = memory_kb(pid)
            began = time.monotonic()
            ids = await _wave(http, url, headers, RUNS)
            waited = time.monotonic() - began
            live = memory_kb(pid)
            await _finish(http, url, headers, ids, ended + RUNS)
            ended += RUNS
            after = memory_kb(pid)
            rounds: list[int] = []
            for _ in range(ENDED_ROUNDS):
                batch = await _wave(http, url, headers, ENDED_BATCH)
                await _finish(http, url, headers, batch, ended + ENDED_BATCH)
                ended += ENDED_BATCH
                rounds.append(memory_kb(pid)["VmRSS"])
    growth = live["VmRSS"] - base["VmRSS"]
    per_run = growth / RUNS
    verdict = (
        "meets"
        if live["VmRSS"] < TARGET_TOTAL_MB * 1024 and per_run <= TARGET_PER_RUN_KB
        else "MISSES"
    )
    print(
        f"memory, {label}: baseline {mb(base['VmRSS'])}; with {RUNS} waiting "
        f"{mb(live['VmRSS'])} (all waiting {waited:.1f} s after the first POST); "
        f"growth {growth / 1024:.1f} MB = {per_run:.1f} KB per waiting run; "
        f"peak {mb(live['VmHWM'])}; {verdict} the target "
        f"(< {TARGET_TOTAL_MB} MB, <= {TARGET_PER_RUN_KB} KB per run)",
        flush=True,
    )
    print(
        f"memory, {label}: after the {RUNS} ended (half approved, half cancelled) "
        f"{mb(after['VmRSS'])} (peak {mb(after['VmHWM'])}); after each further "
        f"{ENDED_BATCH} ended runs: " + ", ".join(mb(kb) for kb in rounds) + f" ({ended} ended)",
        flush=True,
    )


async def main(argv: list[str] | None = None) -> None:
    print(machine_note(), flush=True)
    await on_sqlite_and_postgres("memory", "mem", measure)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
