"""Engine overhead: start→done of `true` pipelines minus the commands' own time.

    python -m bench.bench_engine [--runs 25] [--no-postgres]

Prints medians (ms) for a 2-step and a 20-step pipeline on SQLite and
PostgreSQL, and the wall time and peak RSS of 200 runs started at once.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from ansflow.wiring import build_core
from engine.permissions import Actor
from engine.runner import RunRequest
from storage.db import close_db, open_db
from tests.helpers import make_settings, write_pipeline

CLI = Actor("cli:bench", trusted=True)


def _pipeline(name: str, steps: int) -> str:
    body = "".join(f"  - name: s{i}\n    run: 'true'\n" for i in range(steps))
    return f"name: {name}\nsteps:\n{body}"


async def command_cost(samples: int = 40) -> float:
    """Median seconds to spawn, run and reap `/bin/sh -c true` as the executor does."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            "true",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        await process.communicate()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def overhead(url: str, folder: Path, runs: int) -> dict[str, float]:
    settings = make_settings(url, folder)
    await open_db(url)
    core = build_core(settings)
    try:
        cost = await command_cost()
        result = {"command_ms": cost * 1000}
        for steps in (2, 20):
            name = f"true{steps}"
            samples = []
            for i in range(runs + 2):
                started = time.perf_counter()
                run = await core.engine.start_run(RunRequest(name, {}, CLI))
                await core.engine.wait_finished(run.id, timeout=60)
                elapsed = time.perf_counter() - started
                if i >= 2:  # warm-up
                    samples.append(elapsed - steps * cost)
            result[f"{steps}_step_ms"] = statistics.median(samples) * 1000
            result[f"{steps}_step_total_ms"] = (statistics.median(samples) + steps * cost) * 1000
        await core.engine.run_until_idle()
        return result
    finally:
        await core.stop()
        await close_db()


async def burst(url: str, folder: Path, count: int = 200) -> dict[str, float]:
    settings = make_settings(url, folder)
    await open_db(url)
    core = build_core(settings)
    try:
        started = time.perf_counter()
        runs = await asyncio.gather(
            *(core.engine.start_run(RunRequest("true2", {}, CLI)) for _ in range(count))
        )
        finals = await asyncio.gather(*(core.engine.wait_finished(r.id, timeout=300) for r in runs))
        wall = time.perf_counter() - started
        ok = sum(1 for f in finals if f.status == "success")
        await core.engine.run_until_idle()
        return {"runs": count, "succeeded": ok, "wall_s": wall}
    finally:
        await core.stop()
        await close_db()


def _databases(with_postgres: bool, tmp: Path) -> list[tuple[str, str, object]]:
    targets: list[tuple[str, str, object]] = [("sqlite", f"sqlite://{tmp / 'bench.db'}", None)]
    if with_postgres:
        from tests.pg_server import ThrowawayPostgres

        if ThrowawayPostgres.available():
            server = ThrowawayPostgres()
            server.start()
            targets.append(("postgres", server.create_database("bench"), server))
    return targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "pipelines"
        for steps in (2, 20):
            write_pipeline(folder, f"true{steps}", _pipeline(f"true{steps}", steps))
        print("engine overhead (median of", args.runs, "runs; start→done minus the commands' time)")
        for label, url, server in _databases(not args.no_postgres, tmp):
            try:
                figures = asyncio.run(overhead(url, folder, args.runs))
                print(
                    f"  {label:8} 2-step {figures['2_step_ms']:6.2f} ms   "
                    f"20-step {figures['20_step_ms']:7.2f} ms   "
                    f"(one `true` step costs {figures['command_ms']:.2f} ms)"
                )
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                figures = asyncio.run(burst(url, folder))
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                print(
                    f"  {label:8} 200 runs at once: {figures['wall_s']:.2f} s wall, "
                    f"{figures['succeeded']:.0f}/200 succeeded, peak RSS {peak / 1024:.0f} MiB "
                    f"(before: {before / 1024:.0f} MiB)"
                )
            finally:
                if server is not None:
                    server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
