"""``/api/v1/cicd/executions/``: create, list, detail, cancel, logs."""

from __future__ import annotations

from aiohttp import web
from tortoise.exceptions import IntegrityError

from api import idempotency
from api.auth import actor_of
from api.body import parse_create
from api.common import (
    PipelineCache,
    approvals_of,
    core_of,
    json_object,
    path_id,
    visible_run,
)
from api.errors import ApiError
from api.listing import list_runs
from api.render import execution_json
from engine.pipeline_ids import name_of, pipeline_ids
from engine.runner import CancelResult, RunRequest
from engine.snapshots import run_snapshot
from storage.models import StepRun

BASE = "/api/v1/cicd/executions/"


async def pipeline_by_id(request: web.Request, pipeline_id: int) -> str:
    """The loaded pipeline that was given ``pipeline_id`` (ids are stored, never reused)."""
    names = core_of(request).engine.source.catalog().pipelines
    await pipeline_ids(names)  # a pipeline never listed yet gets its id now
    name = await name_of(pipeline_id)
    if name is None or name not in names:
        raise ApiError(404, f"There is no pipeline with id {pipeline_id}.")
    return name


async def create_execution(request: web.Request) -> web.Response:
    raw = await json_object(request)
    body = parse_create(raw)
    claim = idempotency.claim_of(request, actor_of(request).user_id, raw)
    if claim is not None:
        earlier = await idempotency.earlier_run(claim)
        if earlier is not None:
            return await _replay(request, earlier)
    name = body.pipeline
    if body.pipeline_id is not None:
        by_id = await pipeline_by_id(request, body.pipeline_id)
        if name is not None and name != by_id:
            raise ApiError(
                400, f"`pipeline` {name!r} and `pipeline_id` {body.pipeline_id} ({by_id!r}) differ."
            )
        name = by_id
    assert name is not None
    engine = core_of(request).engine
    run_request = RunRequest(
        pipeline=name,
        parameters=body.parameters,
        actor=actor_of(request),
        trigger_type=body.trigger_type,
        source="api",
        cicd_tool_id=body.cicd_tool_id,
        on_created=claim.record if claim is not None else None,
    )
    try:
        snapshot = await engine.start_run(run_request)
    except IntegrityError:
        # A concurrent request with the same key committed first (its row is unique).
        earlier = await idempotency.earlier_run(claim) if claim is not None else None
        if earlier is None:
            raise
        return await _replay(request, earlier)
    return web.json_response(
        execution_json(snapshot), status=201, headers={"Location": f"{BASE}{snapshot.id}/"}
    )


async def _replay(request: web.Request, run_id: int) -> web.Response:
    """200 with the execution an earlier request with the same key created (as it is now)."""
    snapshot = await core_of(request).engine.snapshot(run_id)
    headers = {"Location": f"{BASE}{run_id}/", idempotency.REPLAYED: "true"}
    return web.json_response(execution_json(snapshot), status=200, headers=headers)


async def get_execution(request: web.Request) -> web.Response:
    run, steps = await visible_run(request, path_id(request))
    snapshot = run_snapshot(run, steps)
    return web.json_response(execution_json(snapshot, await approvals_of(run.id, steps)))


async def cancel_execution(request: web.Request) -> web.Response:
    run_id = path_id(request)
    engine = core_of(request).engine
    result = await engine.cancel_run(run_id, actor_of(request))
    snapshot = await engine.snapshot(run_id)
    status = 202 if result == CancelResult.REQUESTED else 200
    return web.json_response(execution_json(snapshot), status=status)


async def _log_of(request: web.Request, step: StepRun) -> str:
    """A step's whole log: a Jenkins build's console read from Jenkins, else what is stored.

    A running local step's output so far is in its row (written every second or
    so, whichever replica runs it); when it runs in this process, its output
    as it stands right now.
    """
    if step.status == "running" and step.kind == "run":
        live = core_of(request).shell.live_log(step.id)
        if live is not None:
            return live
    read_console = core_of(request).jenkins_console
    if step.kind == "jenkins" and read_console is not None:
        console = await read_console(step)
        if console is not None:
            return console
    return step.log or step.log_tail


async def execution_logs(request: web.Request) -> web.Response:
    run, steps = await visible_run(request, path_id(request), with_logs=True)
    wanted = request.query.get("step")
    if wanted is not None:
        chosen = [s for s in steps if wanted in (s.name, s.path)]
        if not chosen:
            raise ApiError(
                404,
                f"Run {run.id} has no step named `{wanted[:80]}`. "
                f"Its steps: {', '.join(s.name for s in steps)}.",
                steps=[s.name for s in steps],
            )
        text = "".join([await _log_of(request, s) for s in chosen])
    else:
        parts = [f"==> {s.name} ({s.status}) <==\n{await _log_of(request, s)}" for s in steps]
        text = "\n".join(p if p.endswith("\n") else p + "\n" for p in parts)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def add_routes(app: web.Application, cache: PipelineCache) -> None:
    async def list_handler(request: web.Request) -> web.Response:
        return await list_runs(request, cache)

    app.router.add_post(BASE, create_execution)
    app.router.add_get(BASE, list_handler)
    app.router.add_get(BASE + "{id}/", get_execution)
    app.router.add_post(BASE + "{id}/cancel/", cancel_execution)
    app.router.add_get(BASE + "{id}/logs/", execution_logs)
