"""Schedules and concurrency groups in one ``serve`` application on SQLite.

    python -m bench.bench_triggers [--fires 10] [--runs 10]

Prints, as median and max in ms: how late after its scheduled time a fire's
run is created and running (``every: 1s``), and how long after a group's
holder finished the next queued run of the group was running.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
from pathlib import Path

from engine.permissions import Actor
from engine.runner import RunRequest
from storage.models import Run, ScheduleFire
from tests.helpers import make_settings, serving, write_pipeline

CLI = Actor("cli:bench", trusted=True)
TICK = "name: tick\nschedule:\n  - every: 1s\nsteps:\n  - {name: t, run: 'true'}\n"
GROUPED = "name: one\nconcurrency: {group: one}\nsteps:\n  - {name: t, run: 'true'}\n"


def figures(label: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"{label}: n={len(ms)} median={statistics.median(ms):.1f} ms max={max(ms):.1f} ms")


async def schedule_delays(folder: Path, fires: int) -> None:
    write_pipeline(folder / "pipelines", "tick", TICK)
    settings = make_settings(f"sqlite://{folder / 'tick.db'}", folder / "pipelines")
    async with serving(settings, workdir=folder / "work"):
        for _ in range(fires * 4):
            if await ScheduleFire.filter(outcome="started").count() >= fires + 1:
                break
            await asyncio.sleep(0.5)
        rows = await ScheduleFire.filter(outcome="started").order_by("fire_at")
        runs = {r.id: r for r in await Run.filter(pipeline="tick")}
    created = [(runs[f.run_id].created_at - f.fire_at).total_seconds() for f in rows if f.run_id]
    started = [
        (runs[f.run_id].started_at - f.fire_at).total_seconds()  # type: ignore[operator]
        for f in rows
        if f.run_id and runs[f.run_id].started_at is not None
    ]
    figures("fire -> run created", created)
    figures("fire -> run running", started)


async def handoff_delays(folder: Path, count: int) -> None:
    write_pipeline(folder / "pipelines2", "one", GROUPED)
    settings = make_settings(f"sqlite://{folder / 'one.db'}", folder / "pipelines2")
    async with serving(settings, workdir=folder / "work2") as server:
        engine = server.core.engine
        ids = [(await engine.start_run(RunRequest("one", {}, CLI))).id for _ in range(count)]
        for run_id in ids:
            await engine.wait_finished(run_id, timeout=60)
        await engine.run_until_idle()
        runs = list(await Run.filter(id__in=ids).order_by("id"))
    gaps = [
        (after.started_at - before.finished_at).total_seconds()  # type: ignore[operator]
        for before, after in itertools.pairwise(runs)
    ]
    figures("group freed -> next queued run running", gaps)


async def run(fires: int, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await schedule_delays(Path(tmp), fires)
        await handoff_delays(Path(tmp), count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fires", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    asyncio.run(run(args.fires, args.runs))


if __name__ == "__main__":
    main()
