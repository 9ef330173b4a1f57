"""JSON errors for the REST API, and the middleware that guarantees them.

Every answer under ``/api/`` that is not a success is ``{"error", "detail"}``
JSON (the hook routes under ``/hooks/`` too). A ``UserError`` from the engine
maps to its status here, in one table; the database being unreachable is 503
with ``Retry-After``; anything else escaping a handler is a bug: logged with
its traceback and a reference id, and answered with a 500 that says only that.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from engine.errors import (
    Conflict,
    InvalidParameter,
    NotAllowed,
    PipelineNotFound,
    RunNotFound,
    StepNotFound,
    ToolNotActive,
    UnknownTool,
    UserError,
)
from storage.outage import is_database_outage

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Paths whose errors this module answers as JSON.
JSON_ERROR_PREFIXES = (API_PREFIX, "/hooks/")
UNAVAILABLE = "database unavailable"
UNAVAILABLE_DETAIL = "try again shortly"
RETRY_AFTER_SECONDS = 5
TOOL_NOT_ACTIVE = "CI/CD tool is not active"

_SLUGS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "unprocessable",
    500: "internal_error",
    503: UNAVAILABLE,
}

# Most specific first: ToolNotActive is a Conflict.
_USER_ERRORS: list[tuple[type[UserError], int]] = [
    (ToolNotActive, 409),
    (PipelineNotFound, 404),
    (RunNotFound, 404),
    (StepNotFound, 404),
    (UnknownTool, 404),
    (InvalidParameter, 400),
    (NotAllowed, 403),
    (Conflict, 409),
]


class ApiError(Exception):
    """Raised by handlers: the status and what to tell the client."""

    def __init__(self, status: int, detail: Any, error: str | None = None, **extra: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.error = error or _SLUGS.get(status, "error")
        self.extra = extra


def error_response(
    status: int, detail: Any, error: str | None = None, **extra: Any
) -> web.Response:
    body = {"error": error or _SLUGS.get(status, "error"), "detail": detail, **extra}
    return web.json_response(body, status=status)


def from_user_error(exc: UserError) -> ApiError:
    status = next((code for kind, code in _USER_ERRORS if isinstance(exc, kind)), 400)
    if isinstance(exc, ToolNotActive):
        return ApiError(409, f"{TOOL_NOT_ACTIVE}: {exc.tool}", TOOL_NOT_ACTIVE, tool=exc.tool)
    extra: dict[str, Any] = {}
    if isinstance(exc, InvalidParameter) and exc.parameter is not None:
        extra["parameter"] = exc.parameter
    if isinstance(exc, PipelineNotFound) and exc.close_matches:
        extra["close_matches"] = exc.close_matches
    return ApiError(status, str(exc), **extra)


def unavailable_response() -> web.Response:
    """503 while the database cannot be reached: the client should simply retry."""
    response = error_response(503, UNAVAILABLE_DETAIL, UNAVAILABLE)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The response a handler already started (a WebSocket after its upgrade): no error
# answer can follow it, so an error closes the WebSocket instead.
PREPARED: web.RequestKey[web.StreamResponse] = web.RequestKey("prepared", web.StreamResponse)


async def remember_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal: note that this request's answer has begun."""
    request[PREPARED] = response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(JSON_ERROR_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except Exception as exc:
        response = _answer(request, exc)
        started = request.get(PREPARED)
        if started is None:
            return response
        if isinstance(started, web.WebSocketResponse):
            if not started.closed:
                if response.status == 503:
                    code, reason = WSCloseCode.TRY_AGAIN_LATER, UNAVAILABLE_DETAIL
                else:
                    code, reason = WSCloseCode.INTERNAL_ERROR, "internal error"
                await started.close(code=code, message=reason.encode())
            return started
        raise


def _answer(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error answer for what a handler raised (HTTP redirects are raised on)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.detail, exc.error, **exc.extra)
    if isinstance(exc, UserError):
        err = from_user_error(exc)
        return error_response(err.status, err.detail, err.error, **err.extra)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        detail = exc.reason if exc.status != 404 else f"No such route: {request.path}"
        response = error_response(exc.status, detail)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if is_database_outage(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        return unavailable_response()
    ref = uuid.uuid4().hex[:12]
    log.error("API bug (ref %s) on %s %s", ref, request.method, request.path, exc_info=exc)
    return error_response(500, f"Internal error; reference {ref}.")
