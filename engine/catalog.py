"""The current pipelines of a folder, reloaded when its files change."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from engine.errors import PipelineNotFound
from engine.pipelines import Catalog, Pipeline, load_catalog

log = logging.getLogger(__name__)

PIPELINE_SUFFIXES = (".yml", ".yaml")


class PipelineSource:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._catalog = Catalog()

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        """Name, mtime and size of each pipeline file: one directory read, one stat each."""
        try:
            found = [e for e in os.scandir(self.folder) if e.name.endswith(PIPELINE_SUFFIXES)]
        except OSError:
            return ()
        entries = []
        for entry in found:
            try:
                stat = entry.stat()
            except OSError:
                continue
            entries.append((entry.name, stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(entries))

    def catalog(self) -> Catalog:
        signature = self._current_signature()
        if signature != self._signature:
            self._catalog = load_catalog(self.folder)
            self._signature = signature
            for problem in self._catalog.problems:
                if not self.folder.is_dir():
                    # The folder itself: ``ansflow serve`` names it once at start.
                    log.debug("no pipelines folder: %s", problem)
                    continue
                log.warning("pipeline file skipped: %s", problem)
        return self._catalog

    def get(self, name: str) -> Pipeline:
        catalog = self.catalog()
        pipeline = catalog.get(name)
        if pipeline is None:
            raise PipelineNotFound(
                name, close_matches(name, catalog.pipelines), list(catalog.pipelines)
            )
        return pipeline


def close_matches(name: str, names: Iterable[str], limit: int = 3) -> list[str]:
    """Names like ``name``, best first: the same in another case, similar spellings,
    then names that contain it or that it contains."""
    pool = sorted(names)
    wanted = name.casefold()
    same = [n for n in pool if n.casefold() == wanted]
    similar = difflib.get_close_matches(name, pool, n=limit, cutoff=0.5)
    within = [n for n in pool if wanted and (wanted in n.casefold() or n.casefold() in wanted)]
    return list(dict.fromkeys([*same, *similar, *within]))[:limit]
