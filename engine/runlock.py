"""A per-run lock that the task holding it may enter again.

Executors may end a step from inside the runner's own drive of that run (a
step that fails at once); re-entering must not deadlock.

A run's lock lives only while some task holds it or waits for it: the last
one out removes it, so ended runs leave nothing behind (and a run that is
driven again later simply gets a new lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # tasks holding or waiting for the lock


class RunLocks:
    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._owners: dict[int, asyncio.Task[object] | None] = {}

    def __len__(self) -> int:
        """How many runs have a lock right now (held or waited for)."""
        return len(self._entries)

    def held_by_me(self, run_id: int) -> bool:
        owner = self._owners.get(run_id)
        return owner is not None and owner is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def hold(self, run_id: int) -> AsyncIterator[bool]:
        """Yields True when this task took the lock, False when it already held it."""
        if self.held_by_me(run_id):
            yield False
            return
        entry = self._entries.get(run_id)
        if entry is None:
            entry = self._entries[run_id] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                self._owners[run_id] = asyncio.current_task()
                try:
                    yield True
                finally:
                    self._owners.pop(run_id, None)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[run_id]
