"""Step outcomes kept in memory while the database cannot be reached.

Bounded: past ``limit`` the oldest is dropped (and logged), so an endless
outage cannot exhaust memory. The engine writes them back, oldest first,
once the database answers again.
"""

from __future__ import annotations

import logging
from collections import deque

from engine.executors.base import StepOutcome

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000


class PendingOutcomes:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._items: deque[tuple[int, int, StepOutcome]] = deque()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def keep(self, run_id: int, step_id: int, outcome: StepOutcome, *, front: bool = False) -> None:
        if any(item[1] == step_id for item in self._items):
            return  # the first outcome of a step is the one that counts
        if len(self._items) >= self._limit:
            dropped = self._items.popleft()
            log.error("run %s: dropped a kept step outcome (too many kept)", dropped[0])
        if front:
            self._items.appendleft((run_id, step_id, outcome))
        else:
            self._items.append((run_id, step_id, outcome))

    def take(self) -> list[tuple[int, int, StepOutcome]]:
        items = list(self._items)
        self._items.clear()
        return items
