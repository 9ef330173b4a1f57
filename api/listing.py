"""``GET /api/v1/cicd/executions/``: filters, visibility and pagination."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from tortoise.queryset import QuerySet

from api.auth import actor_of
from api.common import DIGITS, PipelineCache, core_of
from api.errors import ApiError
from api.render import execution_json, page_json
from engine.permissions import may_view
from engine.snapshots import run_snapshot
from engine.state import RunStatus
from storage.models import Run, StepRun

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A non-admin's list is filtered run by run; it looks at most this many newest runs.
MAX_SCAN = 10_000


def _positive(request: web.Request, name: str, default: int, upper: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not DIGITS.match(raw) or not 1 <= int(raw) <= upper:
        raise ApiError(400, f"`{name}` must be a whole number from 1 to {upper}.")
    return int(raw)


async def _visible_ids(
    request: web.Request, cache: PipelineCache, query: QuerySet[Run]
) -> list[int]:
    core = core_of(request)
    actor = actor_of(request)
    rows = await query.limit(MAX_SCAN).values_list("id", "triggered_by", "definition")
    return [
        run_id
        for run_id, started_by, definition in rows
        if may_view(cache.get(definition), started_by, actor, core.engine.admins)
    ]


async def list_runs(request: web.Request, cache: PipelineCache) -> web.Response:
    page = _positive(request, "page", 1, 1_000_000)
    size = _positive(request, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    query = Run.all().order_by("-id")
    status = request.query.get("status")
    if status:
        valid = [s.value for s in RunStatus]
        if status not in valid:
            raise ApiError(400, f"`status` must be one of {', '.join(valid)}.")
        query = query.filter(status=status)
    pipeline = request.query.get("pipeline")
    if pipeline:
        longest = Run._meta.fields_map["pipeline"].max_length  # type: ignore[attr-defined]
        if len(pipeline) > longest:
            raise ApiError(400, f"`pipeline` is longer than {longest} characters; no name is.")
        query = query.filter(pipeline=pipeline)
    actor = actor_of(request)
    start = (page - 1) * size
    ids: list[int]
    if actor.user_id in core_of(request).engine.admins:
        count = await query.count()
        rows: list[Any] = list(await query.offset(start).limit(size).values_list("id", flat=True))
        ids = [int(i) for i in rows]
    else:
        visible = await _visible_ids(request, cache, query)
        count = len(visible)
        ids = visible[start : start + size]
    runs = {r.id: r for r in await Run.filter(id__in=ids)} if ids else {}
    steps: dict[int, list[StepRun]] = {}
    for step in await StepRun.filter(run_id__in=ids).order_by("position") if ids else []:
        steps.setdefault(step.run_id, []).append(step)
    results = [execution_json(run_snapshot(runs[i], steps.get(i, []))) for i in ids if i in runs]
    next_url = str(request.url.update_query(page=page + 1)) if start + size < count else None
    previous_url = (
        str(request.url.update_query(page=min(page - 1, max(1, -(-count // size)))))
        if page > 1
        else None
    )
    return web.json_response(page_json(count, results, next_url, previous_url))
