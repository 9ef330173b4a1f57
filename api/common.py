"""Small helpers every route module uses: the core, bodies, ids, visibility."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from api.auth import actor_of
from api.errors import ApiError
from api.inputs import parse_json
from api.render import Json, decision_json
from engine.permissions import may_view
from engine.pipelines import Pipeline
from engine.services import Services
from storage import runs as store
from storage.models import Approval, ApprovalDecision, Run, StepRun

MAX_ID = 2**31 - 1
DIGITS = re.compile(r"^[0-9]{1,10}$")


SERVICES: web.AppKey[Services] = web.AppKey("api_services", Services)


def core_of(request: web.Request) -> Services:
    """The engine's services, as the composition root handed them to the API."""
    return request.app[SERVICES]


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info.get(name, "")
    if not DIGITS.match(raw) or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(404, f"There is no item with id {raw[:40]!r}.")
    return int(raw)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "The body must be a JSON object; it is empty.")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, f"The body must be a JSON object, not {type(body).__name__}.")
    return body


async def visible_run(
    request: web.Request, run_id: int, *, with_logs: bool = False
) -> tuple[Run, list[StepRun]]:
    """The run and its steps, if the token's user may see it (404/403 otherwise).

    The steps' whole logs are read only ``with_logs``.
    """
    core = core_of(request)
    loaded = await store.read_run_and_steps(run_id, with_logs=with_logs)
    if loaded is None:
        raise ApiError(404, f"There is no run with id {run_id}.")
    run, steps = loaded
    pipeline = core.engine.pinned(run)
    if not may_view(pipeline, run.triggered_by, actor_of(request), core.engine.admins):
        raise ApiError(403, f"You may not see run {run_id} of `{run.pipeline}`.")
    return run, steps


async def approvals_of(run_id: int, steps: list[StepRun]) -> list[Json]:
    """Every approver decision on the run, oldest first (empty when there are none)."""
    if not any(s.kind == "approval" for s in steps):
        return []  # no gate, no decisions: spare the query
    approvals = await Approval.filter(run_id=run_id)
    if not approvals:
        return []
    names = {s.id: s.name for s in steps}
    step_of = {a.id: names.get(a.step_id, "") for a in approvals}
    decisions = await ApprovalDecision.filter(approval_id__in=list(step_of)).order_by(
        "decided_at", "id"
    )
    return [
        decision_json(step_of[d.approval_id], d.user_id, d.decision, d.comment, d.decided_at)
        for d in decisions
    ]


class PipelineCache:
    """Runs pin their definition; validating one is costly, so keep the recent ones."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[str, Pipeline] = {}

    def get(self, definition: dict[str, Any]) -> Pipeline:
        key = json.dumps(definition, sort_keys=True)
        pipeline = self._items.pop(key, None)
        if pipeline is None:
            pipeline = Pipeline.model_validate(definition)
        self._items[key] = pipeline
        if len(self._items) > self._size:
            self._items.pop(next(iter(self._items)))
        return pipeline
