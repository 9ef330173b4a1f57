"""``/api/v1/pipelines/`` and ``/api/v1/cicd/tools/``."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from api.auth import actor_of
from api.common import core_of, json_object, path_id
from api.errors import ApiError
from api.render import iso, page_json, pipeline_json, tool_json
from engine.permissions import may_run
from engine.pipeline_ids import pipeline_ids
from engine.schedules import next_fire_at
from storage.models import CICDTool

TOOL_STATUSES = ("active", "inactive")


async def list_pipelines(request: web.Request) -> web.Response:
    """The pipelines the token's user may run; ``id`` is stored and never changes."""
    engine = core_of(request).engine
    catalog = engine.source.catalog()
    actor = actor_of(request)
    ids = await pipeline_ids(catalog.pipelines)
    now = datetime.now(UTC)
    results = [
        {
            **pipeline_json(ids[name], catalog.pipelines[name]),
            "next_fire_at": iso(next_fire_at(catalog.pipelines[name], now)),
        }
        for name in sorted(catalog.pipelines)
        if may_run(catalog.pipelines[name], actor, engine.admins)
    ]
    return web.json_response(page_json(len(results), results, None, None))


async def list_tools(request: web.Request) -> web.Response:
    results = [tool_json(t) for t in await CICDTool.all().order_by("id")]
    return web.json_response(page_json(len(results), results, None, None))


async def patch_tool(request: web.Request) -> web.Response:
    tool_id = path_id(request)
    body = await json_object(request)
    unknown = sorted(set(body) - {"status"})
    if unknown:
        raise ApiError(400, f"Only `status` can be changed; not {', '.join(unknown)}.")
    status = body.get("status")
    if status not in TOOL_STATUSES:
        raise ApiError(400, f"`status` must be one of {', '.join(TOOL_STATUSES)}.")
    if actor_of(request).user_id not in core_of(request).engine.admins:
        raise ApiError(403, "Only an admin (ANSFLOW_ADMINS) may change a CI/CD tool.")
    updated = await CICDTool.filter(id=tool_id).update(status=status)
    tool = await CICDTool.filter(id=tool_id).first()
    if not updated or tool is None:
        raise ApiError(404, f"There is no CI/CD tool with id {tool_id}.")
    return web.json_response(tool_json(tool))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/pipelines/", list_pipelines)
    app.router.add_get("/api/v1/cicd/tools/", list_tools)
    app.router.add_patch("/api/v1/cicd/tools/{id}/", patch_tool)
