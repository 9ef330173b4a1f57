"""Stable pipeline ids: given once, when a pipeline's name is first seen, and kept.

The id is stored (``PipelineRecord``), so adding a file that sorts first moves
nobody, and a pipeline removed and added again gets its old id back. Several
processes may see a new name at once: the name is unique, and whoever loses
the insert reads the winner's row.
"""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.exceptions import IntegrityError

from storage.models import PipelineRecord


async def pipeline_ids(names: Iterable[str]) -> dict[str, int]:
    """The id of each name, giving one (in name order) to those never seen before."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await PipelineRecord.filter(name__in=wanted).values_list("name", "id")
    ids = {str(name): int(pid) for name, pid in rows}
    for name in wanted:
        if name not in ids:
            ids[name] = await _insert_if_absent(name)
    return ids


async def name_of(pipeline_id: int) -> str | None:
    """The pipeline name that ``pipeline_id`` was given to, if any."""
    rows = await PipelineRecord.filter(id=pipeline_id).values_list("name", flat=True)
    return str(rows[0]) if rows else None


async def _insert_if_absent(name: str) -> int:
    try:
        record = await PipelineRecord.create(name=name)
    except IntegrityError:  # another process gave it an id first
        existing = await PipelineRecord.get(name=name)
        return existing.id
    return record.id
