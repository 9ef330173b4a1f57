"""``POST /hooks/pipelines/{name}``: a signed webhook (GitHub's way) starts a run.

Checked in this order, and nothing is created unless all pass: the body's
size (413), a pipeline that declares ``triggers.webhook`` (404, the same
answer as an unknown pipeline), the ``X-Hub-Signature-256`` HMAC-SHA256 of
the raw body keyed by the env var ``secret_env`` names, read at request time
(401), a ``ping`` event (200, no run), the JSON body and the declared paths
(400), then the parameters as any run's (400). ``X-GitHub-Delivery`` is
claimed with a unique row before the run starts: a redelivery answers 200
with the same run and starts nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from api.common import core_of
from api.errors import ApiError, error_response, from_user_error
from api.render import execution_json
from engine.errors import PipelineNotFound, UserError
from engine.permissions import Actor
from engine.pipelines import Pipeline
from engine.pipelines.triggers import WebhookSpec, body_value
from engine.runner import RunRequest
from storage import triggers as claims

log = logging.getLogger(__name__)

ROUTE = "/hooks/pipelines/{name}"
MAX_BODY = 1024 * 1024
WEBHOOK_ACTOR = Actor(user_id="webhook", trusted=True)
DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A redelivery racing the first one waits this long for its run id.
PENDING_WAIT = 5.0
STALE_CLAIM_SECONDS = 60.0


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"There is no pipeline {name[:80]!r} that takes webhooks.")


def _webhook_of(request: web.Request, name: str) -> tuple[Pipeline, WebhookSpec]:
    try:
        pipeline = core_of(request).engine.source.get(name)
    except PipelineNotFound:
        raise _not_found(name) from None
    spec = pipeline.triggers.webhook if pipeline.triggers is not None else None
    if spec is None:
        raise _not_found(name)
    return pipeline, spec


async def _read_bounded(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
    return raw


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.removeprefix("sha256=").encode())


def parameters_from(body: Any, spec: WebhookSpec) -> dict[str, str]:
    """The declared values from the body, as text; ApiError(400) naming a missing path."""
    values: dict[str, str] = {}
    for name, path in spec.parameters.items():
        try:
            value = body_value(body, path)
        except KeyError:
            raise ApiError(400, f"The body has no {path} (for parameter `{name}`).") from None
        if isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[name] = str(value)
        else:
            kind = "null" if value is None else type(value).__name__
            raise ApiError(
                400, f"{path} (for parameter `{name}`) is {kind}; a text or a number is needed."
            )
    return values


async def _claim(name: str, delivery: str) -> bool:
    if await claims.claim_delivery(name, delivery):
        return True
    # A claim whose run never came (the process died in between) is taken over.
    stale = datetime.now(UTC) - timedelta(seconds=STALE_CLAIM_SECONDS)
    return await claims.reclaim_stale_delivery(name, delivery, stale)


async def _same_run(request: web.Request, name: str, delivery: str) -> web.Response:
    """The answer to a delivery seen before: its run, once its first request created it."""
    engine = core_of(request).engine
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PENDING_WAIT
    while True:
        seen, run_id = await claims.delivery_run(name, delivery)
        if run_id is not None:
            snapshot = await engine.snapshot(run_id)
            return web.json_response({**execution_json(snapshot), "redelivery": True})
        if not seen or loop.time() > deadline:
            raise ApiError(409, f"Delivery {delivery} is being handled; send it again later.")
        await asyncio.sleep(0.05)


async def pipeline_hook(request: web.Request) -> web.Response:
    """The route: refusals as the API's JSON errors (this path is outside ``/api/``)."""
    try:
        return await _handle(request)
    except ApiError as exc:
        return error_response(exc.status, exc.detail, exc.error, **exc.extra)
    except UserError as exc:
        err = from_user_error(exc)
        return error_response(err.status, err.detail, err.error, **err.extra)


async def _handle(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "")
    raw = await _read_bounded(request)
    pipeline, spec = _webhook_of(request, name)
    secret = os.environ.get(spec.secret_env, "")
    if not secret:
        log.warning(
            "webhook for %s refused: the env var %s (secret_env) is not set",
            pipeline.name,
            spec.secret_env,
        )
        raise ApiError(401, "The signature cannot be checked: no webhook secret is configured.")
    core_of(request).masker.add(secret)
    if not signature_ok(secret, raw, request.headers.get("X-Hub-Signature-256")):
        raise ApiError(401, "Missing or wrong X-Hub-Signature-256.")
    if request.headers.get("X-GitHub-Event", "") == "ping":
        return web.json_response({"status": "ok", "pipeline": pipeline.name})
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None
    delivery = request.headers.get("X-GitHub-Delivery", "").strip()
    if delivery and not DELIVERY_ID.match(delivery):
        raise ApiError(400, "X-GitHub-Delivery must be 1-128 letters, digits or . _ : -")
    if delivery and not await _claim(pipeline.name, delivery):
        return await _same_run(request, pipeline.name, delivery)
    try:
        parameters = parameters_from(body, spec)
        snapshot = await core_of(request).engine.start_run(
            RunRequest(
                pipeline=pipeline.name,
                parameters=parameters,
                actor=WEBHOOK_ACTOR,
                trigger_type="webhook",
                source="webhook",
            )
        )
    except Exception:  # refused (ApiError, UserError) or failed: forget the claim
        if delivery:
            await claims.drop_delivery(pipeline.name, delivery)
        raise
    if delivery:
        await claims.set_delivery_run(pipeline.name, delivery, snapshot.id)
    return web.json_response(
        execution_json(snapshot),
        status=201,
        headers={"Location": f"/api/v1/cicd/executions/{snapshot.id}/"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(ROUTE, pipeline_hook)
