"""What a run costs in round trips to PostgreSQL: ``python -m bench.bench_round_trips``.

On PostgreSQL a run's time goes mostly to round trips (asyncpg sends one
statement at a time and waits for its answer). This counts the statements
PostgreSQL received for each run of a pipeline of two ``echo`` steps, from
the server's own statement log, with the engine wired as ``ansflow serve``
wires it (the replicas' notice included, no Slack). The lease keeper's
heartbeats are left out of the count.

A commit is a COMMIT, or a write sent outside a transaction (a step
boundary's statement commits alone when no Slack outbox rows go with it).

It then times, on this machine and with asyncpg alone, a round trip
(``SELECT 1``) and a step boundary's writes two ways: as six statements
(BEGIN, the read, two compare-and-sets, the notice, COMMIT, as the engine
once sent them) and as one statement that commits alone. The gap is what
folding a round into one statement buys per boundary.
"""

from __future__ import annotations

import asyncio
import collections
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ansflow.wiring import build_core
from bench.serve_proc import TWO_ECHOES
from engine.permissions import Actor
from engine.runner import RunRequest
from storage.db import close_db, open_db
from tests.helpers import make_settings, write_pipeline

CLI = Actor("cli:bench", trusted=True)
RUNS = 5
WARMUP = 3
SAMPLES = 200
# "[pid] LOG:  statement: BEGIN;" (simple protocol) or "LOG:  execute <name>: UPDATE ..."
# (extended), after the log line prefix "%m [%p] ".
_STATEMENT = re.compile(r"\[(\d+)\] LOG:  (?:statement|execute [^:]*): (.*)$")
_WRITES = frozenset({"WITH", "INSERT", "UPDATE", "DELETE"})
_BACKGROUND = ('"replica"', '"lease"', "clock_timestamp()")


def kind_of(sql: str) -> str:
    """A statement's kind for the count: its first word (``WITH``: a round's writes sent
    together), or ``pg_notify`` for a notice sent alone."""
    first = sql.split(None, 1)[0].rstrip(";").upper() if sql.strip() else "?"
    if first == "SELECT" and "pg_notify(" in sql:
        return "pg_notify"
    return first


def count_statements(log_text: str) -> collections.Counter[str]:
    """Statements in a slice of the server log, by kind (background ones left out),
    and ``commits``: COMMITs and the writes sent outside a transaction."""
    counted: collections.Counter[str] = collections.Counter()
    in_transaction: dict[str, bool] = {}
    for line in log_text.splitlines():
        found = _STATEMENT.search(line)
        if found is None:
            continue
        backend, sql = found.groups()
        if any(mark in sql for mark in _BACKGROUND):
            continue
        kind = kind_of(sql)
        counted[kind] += 1
        if kind == "BEGIN":
            in_transaction[backend] = True
        elif kind in ("COMMIT", "ROLLBACK"):
            in_transaction[backend] = False
            counted["commits"] += kind == "COMMIT"
        elif kind in _WRITES and not in_transaction.get(backend, False):
            counted["commits"] += 1
    return counted


async def statements_per_run(url: str, folder: Path, log_file: Path) -> collections.Counter[str]:
    await open_db(url)
    core = build_core(make_settings(url, folder))
    await core.start()
    try:
        for _ in range(WARMUP):
            run = await core.engine.start_run(RunRequest("quick", {}, CLI))
            await core.engine.wait_finished(run.id, timeout=60)
        await asyncio.sleep(0.2)  # the log is written as statements arrive
        mark = log_file.stat().st_size
        started = []
        for _ in range(RUNS):
            # Waiting for the engine to be idle reads nothing (as waiting for the
            # run would: one read of its own per run).
            started.append(await core.engine.start_run(RunRequest("quick", {}, CLI)))
            await core.engine.run_until_idle()
        await asyncio.sleep(0.2)
        with log_file.open("rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        for run in started:
            ended = await core.engine.snapshot(run.id)
            if ended.status != "success":
                raise RuntimeError(f"run {run.id} ended {ended.status}, not success")
    finally:
        await core.stop()
        await close_db()
    return count_statements(text)


async def costs_here(dsn: str) -> dict[str, float]:
    """Medians (ms) of a round trip, and of a boundary's writes sent two ways."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text, v int NOT NULL DEFAULT 0)")
        await conn.execute("INSERT INTO t SELECT g, 'a', 0 FROM generate_series(1, 100) g")
        trip: list[float] = []
        today: list[float] = []
        folded: list[float] = []
        for i in range(SAMPLES):
            began = time.perf_counter()
            await conn.fetchval("SELECT 1")
            trip.append(time.perf_counter() - began)
            began = time.perf_counter()
            async with conn.transaction():
                await conn.fetch("SELECT * FROM t WHERE id = $1", 5)
                await conn.execute("UPDATE t SET s = $1, v = v + 1 WHERE id = $2", str(i), 5)
                await conn.execute("UPDATE t SET s = $1, v = v + 1 WHERE id = $2", str(i), 6)
                await conn.fetchval("SELECT pg_notify('bench', 'x')")
            today.append(time.perf_counter() - began)
            began = time.perf_counter()
            await conn.fetch(
                "WITH a AS (UPDATE t SET s = $1, v = v + 1 WHERE id = $2 RETURNING id), "
                "b AS (UPDATE t SET s = $1, v = v + 1 WHERE id = $3 RETURNING id) "
                "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), "
                "pg_notify('bench', 'x')",
                str(i),
                5,
                6,
            )
            folded.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return {
        "trip": statistics.median(trip) * 1000,
        "today": statistics.median(today) * 1000,
        "folded": statistics.median(folded) * 1000,
    }


def main() -> int:
    from tests.pg_server import ThrowawayPostgres

    if not ThrowawayPostgres.available():
        print("round trips: skipped (no PostgreSQL programs)")
        return 0
    settings = {
        "fsync": "on",
        "synchronous_commit": "on",
        "log_statement": "all",
        "log_line_prefix": "'%m [%p] '",
    }
    with tempfile.TemporaryDirectory() as tmp, ThrowawayPostgres(settings=settings) as pg:
        folder = Path(tmp) / "pipelines"
        write_pipeline(folder, "quick", TWO_ECHOES)
        counted = asyncio.run(statements_per_run(pg.create_database("trips"), folder, pg.log_file))
        pg.create_database("costs")
        costs = asyncio.run(costs_here(pg.dsn("costs")))
    commits = counted.pop("commits", 0)
    total = sum(counted.values())
    kinds = ", ".join(f"{kind} {count / RUNS:g}" for kind, count in counted.most_common())
    print(f"round trips to PostgreSQL per run of 2 echo steps (mean of {RUNS} runs)")
    print(f"  {total / RUNS:g} statements, {commits / RUNS:g} commits: {kinds}")
    print("  (WITH: a round's compare-and-sets and notice in one statement)")
    print(f"this machine, asyncpg alone (median of {SAMPLES})")
    print(f"  a round trip (SELECT 1): {costs['trip']:.3f} ms")
    print(
        f"  a step boundary's writes: {costs['today']:.3f} ms as six statements "
        f"(BEGIN, read, 2 compare-and-sets, notice, COMMIT); "
        f"{costs['folded']:.3f} ms as one statement (the writes and the notice, committing alone)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
