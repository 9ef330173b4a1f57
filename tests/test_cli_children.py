"""``ansflow run`` watches its steps' processes by pidfd: exits are seen, nothing is left behind."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ansflow.cli_children import pidfd_child_watcher, pidfd_usable


async def exit_codes(count: int) -> list[int]:
    processes = [
        await asyncio.create_subprocess_exec("/bin/sh", "-c", f"exit {n}") for n in range(count)
    ]
    return [await asyncio.wait_for(p.wait(), 30) for p in processes]


@pytest.mark.skipif(not pidfd_usable(), reason="this kernel gives no pidfd")
async def test_processes_end_with_their_codes_under_the_pidfd_watcher() -> None:
    with pidfd_child_watcher() as used:
        assert used is (sys.version_info < (3, 12))
        if used:
            assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        assert await exit_codes(5) == [0, 1, 2, 3, 4]


def test_after_it_the_next_event_loop_gets_asyncio_s_default_again() -> None:
    async def inside() -> list[int]:
        with pidfd_child_watcher():
            return await exit_codes(2)

    assert asyncio.run(inside()) == [0, 1]
    if sys.version_info < (3, 12):
        assert isinstance(asyncio.get_child_watcher(), asyncio.ThreadedChildWatcher)
    assert asyncio.run(exit_codes(3)) == [0, 1, 2]
