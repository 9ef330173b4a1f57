"""The SQLite connection's lock (storage/barging_lock.py): mutual exclusion, no queue.

What the server relies on: never two holders; a free lock is taken at once
even while woken waiters have yet to run (so a queue, once formed, drains
instead of holding every later transaction), and a queue of holders that do
not yield drains in one turn of the loop; every waiter gets the lock in the
end, also when one that was woken is cancelled.
"""

from __future__ import annotations

import asyncio

import pytest

from storage.barging_lock import BargingLock


def took_at_once(lock: asyncio.Lock) -> bool:
    """Whether ``lock.acquire()`` completes without yielding to the loop."""
    attempt = lock.acquire()
    try:
        attempt.send(None)
    except StopIteration:
        return True
    attempt.close()
    return False


async def held_with_waiters(count: int) -> tuple[BargingLock, list[asyncio.Task[bool]]]:
    """A held lock, and ``count`` tasks queued for it."""
    lock = BargingLock()
    await lock.acquire()
    waiters = [asyncio.create_task(lock.acquire()) for _ in range(count)]
    await asyncio.sleep(0)  # they run up to the queue
    return lock, waiters


async def test_never_two_holders_and_every_task_gets_its_turn() -> None:
    lock = BargingLock()
    inside = 0
    most_inside = 0
    done: list[int] = []

    async def worker(number: int) -> None:
        nonlocal inside, most_inside
        for turn in range(5):
            async with lock:
                inside += 1
                most_inside = max(most_inside, inside)
                if (number + turn) % 3 == 0:
                    await asyncio.sleep(0)  # some holders yield, as a BEGIN in the thread does
                inside -= 1
            await asyncio.sleep(0)
        done.append(number)

    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(30))), 10)
    assert most_inside == 1
    assert sorted(done) == list(range(30))
    assert not lock.locked()


async def test_a_newcomer_takes_the_free_lock_before_a_woken_waiter_runs() -> None:
    # With asyncio.Lock the newcomer would queue behind the woken waiter and wait a
    # turn of the loop although the lock is free.
    lock, (waiter,) = await held_with_waiters(1)
    lock.release()  # wakes it; it runs on the next turn
    # This task, running on in the same turn, takes the free lock without waiting.
    assert took_at_once(lock)
    assert not waiter.done()
    lock.release()  # this task's transaction is over; the waiter's turn
    await asyncio.wait_for(waiter, 1)
    assert lock.locked()
    lock.release()


async def test_a_queue_of_short_holders_drains_in_one_turn() -> None:
    # A checkpoint held writers off; meanwhile transactions queued. Each holds the
    # lock without yielding: all of them run on the loop's next turn, not one per turn.
    lock = BargingLock()
    await lock.acquire()
    done: list[int] = []

    async def transaction(number: int) -> None:
        async with lock:
            done.append(number)

    waiters = [asyncio.create_task(transaction(n)) for n in range(5)]
    await asyncio.sleep(0)  # all queued
    lock.release()
    await asyncio.sleep(0)  # one turn
    assert sorted(done) == [0, 1, 2, 3, 4]
    await asyncio.gather(*waiters)
    assert not lock.locked()


async def test_a_woken_waiter_that_is_cancelled_passes_the_wake_up_on() -> None:
    lock, (first, second) = await held_with_waiters(2)
    lock.release()  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.wait_for(second, 1)  # no further release needed
    assert first.cancelled()
    assert lock.locked()
    lock.release()


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    lock, (gone, stays) = await held_with_waiters(2)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    lock.release()
    await asyncio.wait_for(stays, 1)
    lock.release()
    assert not lock.locked()


async def test_releasing_a_free_lock_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not acquired"):
        BargingLock().release()
