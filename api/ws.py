"""WebSockets: ``/api/v1/ws/executions/{id}/`` and ``/api/v1/ws/executions/``.

A connection gets a snapshot first, then one JSON message per engine event
(pushed by :class:`api.hub.Hub`, never by polling the database), with
WebSocket ping/pong heartbeats. A single-run connection closes after sending
the run's final event (or right after the snapshot if it had already ended).
The token comes in the ``Authorization`` header or, for browsers, ``?token=``.

A running step's output comes as ``{"type": "step.log", "step": NAME,
"lines": [...]}`` events (masked; batched and bounded by the engine, a marker
line standing for lines dropped): on a single-run connection unless
``?logs=0``, on the all-runs stream only with ``?logs=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from api.auth import actor_of
from api.common import PipelineCache, approvals_of, core_of, path_id, visible_run
from api.hub import Client, Hub
from api.render import execution_json
from engine.events import Event, RunFinished, RunSnapshot, StepLog
from engine.permissions import may_view
from engine.snapshots import run_snapshot
from engine.state import RUN_ACTIVE, RUN_TERMINAL, RunStatus, StepStatus
from storage import runs as store
from storage.models import Run, StepRun

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("ws_hub", Hub)
HEARTBEAT = 20.0
SEND_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
MAX_SNAPSHOT_RUNS = 100

_RANK = {
    RunStatus.PENDING.value: 0,
    RunStatus.QUEUED.value: 1,
    RunStatus.RUNNING.value: 2,
    RunStatus.WAITING_APPROVAL.value: 2,
    StepStatus.SKIPPED.value: 3,
    RunStatus.SUCCESS.value: 3,
    RunStatus.FAILED.value: 3,
    RunStatus.CANCELLED.value: 3,
}


def _covered(old: str, new: str) -> bool:
    return new == old or _RANK[new] > _RANK[old]


def reflected(event: Event, snapshot: RunSnapshot) -> bool:
    """Did ``snapshot`` (read after ``event`` was queued) already show this change?"""
    if isinstance(event, StepLog):
        return False  # new lines: never in a snapshot
    step = getattr(event, "step", None)
    if step is not None:
        now = snapshot.step(step.id)
        return now is not None and _covered(step.status.value, now.status.value)
    if event.type in ("run.started", "run.status", "run.finished"):
        return _covered(event.run.status.value, snapshot.status.value)
    return snapshot.status in RUN_TERMINAL


async def _single_snapshot(run_id: int) -> tuple[str, RunSnapshot]:
    run = await store.read_run(run_id)
    assert run is not None
    steps = await store.read_steps(run_id)
    snapshot = run_snapshot(run, steps)
    body = {
        "type": "snapshot",
        "execution_id": run_id,
        "status": snapshot.status.value,
        "execution": execution_json(snapshot, await approvals_of(run_id, steps)),
    }
    return json.dumps(body), snapshot


async def _stream_snapshot(request: web.Request, cache: PipelineCache) -> str:
    core = core_of(request)
    actor = actor_of(request)
    active = [s.value for s in RUN_ACTIVE]
    runs = await Run.filter(status__in=active).order_by("-id").limit(MAX_SNAPSHOT_RUNS)
    runs = [
        r
        for r in runs
        if may_view(cache.get(r.definition), r.triggered_by, actor, core.engine.admins)
    ]
    steps: dict[int, list[StepRun]] = {}
    for step in await StepRun.filter(run_id__in=[r.id for r in runs]).order_by("position"):
        steps.setdefault(step.run_id, []).append(step)
    executions = [execution_json(run_snapshot(r, steps.get(r.id, []))) for r in runs]
    return json.dumps({"type": "snapshot", "executions": executions})


async def _send(ws: web.WebSocketResponse, text: str) -> None:
    await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT)


async def _write_single(ws: web.WebSocketResponse, client: Client, run_id: int) -> None:
    text, snapshot = await _single_snapshot(run_id)
    await _send(ws, text)
    if snapshot.status in RUN_TERMINAL:
        return
    catching_up = True
    while True:
        event, text = await client.queue.get()
        if catching_up and reflected(event, snapshot):
            continue
        catching_up = False
        await _send(ws, text)
        if isinstance(event, RunFinished):
            return


async def _write_stream(ws: web.WebSocketResponse, client: Client, first: str) -> None:
    await _send(ws, first)
    while True:
        _event, text = await client.queue.get()
        await _send(ws, text)


async def _serve(request: web.Request, run_id: int | None) -> web.WebSocketResponse:
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=64 * 1024)
    await ws.prepare(request)
    transport = request.transport
    tasks: list[asyncio.Task[None]] = []

    def drop() -> None:
        for task in tasks:
            task.cancel()
        if transport is not None:
            transport.abort()

    # Registered before the snapshot is read, so no event falls in between.
    client = hub.add(actor_of(request), run_id, drop, logs=wants_logs(request, run_id))
    try:
        if run_id is not None:
            writer = _write_single(ws, client, run_id)
        else:
            writer = _write_stream(ws, client, await _stream_snapshot(request, hub.pipelines))
        tasks.append(asyncio.ensure_future(_then_close(ws, writer)))
        async for _message in ws:
            pass  # nothing to hear from clients; aiohttp answers pings
    finally:
        hub.remove(client)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ws


def wants_logs(request: web.Request, run_id: int | None) -> bool:
    value = request.query.get("logs")
    if value is None:
        return run_id is not None
    return value.strip().lower() not in ("0", "false", "no", "off")


async def _then_close(ws: web.WebSocketResponse, writer: Coroutine[Any, Any, None]) -> None:
    try:
        await writer
    except (ConnectionError, TimeoutError):
        log.info("WebSocket client went away or stalled")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("WebSocket writer failed")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)


async def ws_execution(request: web.Request) -> web.StreamResponse:
    run_id = path_id(request)
    await visible_run(request, run_id)  # 404 / 403 as JSON before upgrading
    return await _serve(request, run_id)


async def ws_executions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, None)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/ws/executions/", ws_executions)
    app.router.add_get("/api/v1/ws/executions/{id}/", ws_execution)
