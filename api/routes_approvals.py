"""``POST …/executions/{id}/approve/`` and ``…/reject/``: decide as the token's subject.

The decision itself (who may decide, how many approvals, what happens next) is
``engine.approvals.decide`` — the same code the Slack buttons call. Until that
module exists these routes answer 409 "approvals are not available".
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from aiohttp import web

from api.auth import actor_of
from api.common import approvals_of, core_of, json_object, path_id, visible_run
from api.errors import ApiError
from api.render import execution_json
from engine.permissions import Actor
from engine.services import Services
from engine.snapshots import run_snapshot

BASE = "/api/v1/cicd/executions/"
MAX_COMMENT = 2000
UNAVAILABLE = "approvals are not available"


async def decide_approval(
    core: Services, run_id: int, actor: Actor, decision: str, comment: str | None
) -> Any:
    try:
        module = importlib.import_module("engine.approvals")
    except ModuleNotFoundError as exc:
        if exc.name not in ("engine.approvals", "engine"):
            raise
        raise ApiError(409, UNAVAILABLE, "conflict") from None
    decide = getattr(module, "decide", None)
    if decide is None:
        raise ApiError(409, UNAVAILABLE, "conflict")
    names = list(inspect.signature(decide).parameters)
    if names and names[0] in ("engine", "core"):
        first = core.engine if names[0] == "engine" else core
        return await decide(first, run_id, actor, decision, comment)
    return await decide(run_id, actor, decision, comment)


async def _comment_of(request: web.Request) -> str | None:
    raw = await request.read()
    if not raw.strip():
        return None
    body = await json_object(request)
    unknown = sorted(set(body) - {"comment"})
    if unknown:
        raise ApiError(400, f"Unknown field(s) {', '.join(unknown)}. Valid: comment.")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ApiError(400, "`comment` must be a string.")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ApiError(400, f"`comment` is longer than {MAX_COMMENT} characters.")
    return comment


async def _decide(request: web.Request, decision: str) -> web.Response:
    run_id = path_id(request)
    comment = await _comment_of(request)
    await visible_run(request, run_id)
    core = core_of(request)
    await decide_approval(core, run_id, actor_of(request), decision, comment)
    run, steps = await visible_run(request, run_id)
    snapshot = run_snapshot(run, steps)
    return web.json_response(execution_json(snapshot, await approvals_of(run_id, steps)))


async def approve(request: web.Request) -> web.Response:
    return await _decide(request, "approve")


async def reject(request: web.Request) -> web.Response:
    return await _decide(request, "reject")


def add_routes(app: web.Application) -> None:
    app.router.add_post(BASE + "{id}/approve/", approve)
    app.router.add_post(BASE + "{id}/reject/", reject)
