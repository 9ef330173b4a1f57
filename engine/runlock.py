"""A per-run lock that the task holding it may enter again.

Executors may end a step from inside the runner's own drive of that run (a
step that fails at once); re-entering must not deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class RunLocks:
    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._owners: dict[int, asyncio.Task[object] | None] = {}

    def held_by_me(self, run_id: int) -> bool:
        owner = self._owners.get(run_id)
        return owner is not None and owner is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def hold(self, run_id: int) -> AsyncIterator[bool]:
        """Yields True when this task took the lock, False when it already held it."""
        if self.held_by_me(run_id):
            yield False
            return
        lock = self._locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            self._owners[run_id] = asyncio.current_task()
            try:
                yield True
            finally:
                self._owners.pop(run_id, None)

    def forget(self, run_id: int) -> None:
        lock = self._locks.get(run_id)
        if lock is not None and not lock.locked():
            del self._locks[run_id]
