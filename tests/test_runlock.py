"""Per-run locks: one holder at a time, re-entrant, and gone once nobody needs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.runlock import RunLocks
from engine.state import RunStatus
from tests.engine_harness import engine_on, run_to_end
from tests.helpers import write_pipeline


async def test_one_holder_at_a_time_and_the_lock_goes_with_the_last_user() -> None:
    locks = RunLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold(7) as took:
            order.append(f"first took={took}")
            async with locks.hold(7) as again:  # re-entering does not deadlock
                order.append(f"first again={again}")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with locks.hold(7) as took:
            order.append(f"second took={took}")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    for _ in range(5):  # let the second task reach the lock and wait on it
        await asyncio.sleep(0)
    assert len(locks) == 1  # held by one, waited for by the other: kept
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first took=True", "first again=False", "first out", "second took=True"]
    assert len(locks) == 0


async def test_a_waiter_that_gives_up_leaves_no_lock() -> None:
    locks = RunLocks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold(1):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold(1):
            raise AssertionError("the waiter was cancelled before it got the lock")

    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(waiter())
    for _ in range(5):
        await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    release.set()
    await holding
    assert len(locks) == 0


async def test_ended_runs_leave_no_lock_in_the_engine(
    database_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir,
        "two",
        "name: two\nsteps:\n  - {name: one, run: echo one}\n  - {name: two, run: echo two}\n",
    )
    async with engine_on(database_url, pipelines_dir) as core:
        ended = [await run_to_end(core, "two") for _ in range(5)]
        await core.engine.run_until_idle()
        left = len(core.engine._locks)
    assert [run.status for run in ended] == [RunStatus.SUCCESS] * 5
    assert left == 0
