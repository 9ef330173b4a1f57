"""Per-run workspaces: each run's local steps work in ``<root>/run-<id>``.

The folder is made on a run's first local step (mode 0700) and shared by the
steps of that run only. A finished run's folder is removed once it has been
finished for ``keep`` seconds (0: as soon as the run ends), by a sweep at
start and every ``sweep_every`` seconds that looks at a bounded number of
folders each time. A run that is still active keeps its folder, whatever its
age, and so does a run with a step running in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.events import Event, RunFinished
from engine.state import RUN_ACTIVE
from storage.models import Run

log = logging.getLogger(__name__)

SWEEP_LIMIT = 200  # folders looked at per sweep
MIN_SWEEP_EVERY = 30.0
MAX_SWEEP_EVERY = 600.0
_NAME = re.compile(r"^run-([0-9]{1,12})$")


class Workspaces:
    def __init__(
        self,
        root: Path,
        keep: float,
        *,
        busy: Callable[[], Collection[int]] = frozenset,
        sweep_every: float | None = None,
    ) -> None:
        self.root = root.absolute()
        self.keep = keep
        self.busy = busy
        self.sweep_every = sweep_every or min(MAX_SWEEP_EVERY, max(MIN_SWEEP_EVERY, keep / 2))
        self.removed = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cursor = ""
        self._root_made = False  # made once (ensure makes it again if it was removed)

    def path_of(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}"

    def ensure(self, run_id: int) -> Path:
        """The run's folder, made (mode 0700) if it is not there yet."""
        path = self.path_of(run_id)
        if path.is_dir():
            return path
        if not self._root_made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_made = True
        try:
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
        except FileNotFoundError:  # the root was removed since: make it again
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
        return path

    def preparing(self, run_id: int) -> tuple[Path, Callable[[], object] | None]:
        """The run's folder, and what makes it (None when it is there). A step's start
        runs that in the thread that forks the step: ``mkdir`` can take a
        millisecond on a slow file system, and the event loop would wait."""
        path = self.path_of(run_id)
        if path.is_dir():
            return path, None
        return path, lambda: self.ensure(run_id)

    # -- cleaning up -------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic sweep (the first one at once); idempotent."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="workspace-sweep")

    def on_event(self, event: Event) -> None:
        """After-commit subscriber: with ``keep`` 0, a run's folder goes when the run ends."""
        if self.keep <= 0 and isinstance(event, RunFinished):
            path = self.path_of(event.run.id)
            if path.exists():
                self._spawn(self._remove(path))

    async def sweep(self) -> int:
        """Remove the folders of runs finished longer than ``keep`` ago; returns how many."""
        found = await asyncio.to_thread(self._list_some)
        if not found:
            return 0
        ids = list(found)
        rows = await Run.filter(id__in=ids).values_list("id", "status", "finished_at")
        known = {int(r[0]): (str(r[1]), r[2]) for r in rows}
        busy = set(self.busy())
        cutoff = time.time() - self.keep
        active = {s.value for s in RUN_ACTIVE}
        removed = 0
        for run_id, path in found.items():
            if run_id in busy:
                continue
            status, finished = known.get(run_id, ("", None))
            if status in active:
                continue
            if _stamp(finished, path) <= cutoff:
                await self._remove(path)
                removed += 1
        return removed

    def _list_some(self) -> dict[int, Path]:
        """Up to ``SWEEP_LIMIT`` run folders, going round the whole root across sweeps."""
        try:
            names = sorted(e.name for e in os.scandir(self.root) if _NAME.match(e.name))
        except OSError:
            return {}
        rest = [n for n in names if n > self._cursor] or names
        chosen = rest[:SWEEP_LIMIT]
        self._cursor = chosen[-1] if len(rest) > SWEEP_LIMIT else ""
        found = {}
        for name in chosen:
            match = _NAME.match(name)
            assert match is not None
            found[int(match.group(1))] = self.root / name
        return found

    async def _remove(self, path: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)
        self.removed += 1
        log.debug("removed workspace %s", path)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("removed %s finished run workspace(s)", removed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: try again next time
                log.warning("workspace sweep failed: %s", exc)
            await asyncio.sleep(self.sweep_every)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _stamp(finished: datetime | None, path: Path) -> float:
    """When the run finished; for a folder whose run is unknown, its last change."""
    if finished is not None:
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        return finished.timestamp()
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
