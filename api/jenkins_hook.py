"""``POST /hooks/jenkins/{secret}``: the Notification plugin's JSON (aiohttp edge only).

The secret in the path is the only protection (the plugin signs nothing): a
wrong secret, or none configured, answers 404 as if the route did not exist.
A build no step follows is acknowledged (202) and ignored. Errors are the
API's JSON ``{"error", "detail"}`` (``api.errors`` answers them for ``/hooks/``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from api.errors import ApiError
from api.inputs import parse_json
from engine.jenkins.follow import Follower
from engine.jenkins.hook import apply_notification, parse_notification
from engine.jenkins.tools import ToolClients

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
ROUTE = "/hooks/jenkins/{secret}"


def hook_handler(
    secret: str | None, follower: Follower, clients: ToolClients
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        given = request.match_info.get("secret", "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            raise web.HTTPNotFound()
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
        try:
            note = parse_notification(parse_json(raw))
        except (ValueError, OverflowError, RecursionError):  # e.g. "http://[" or 1e999
            note = None
        if note is None:
            raise ApiError(400, "The body is not a Jenkins build notification.")
        if not await apply_notification(follower, clients, note):
            return web.json_response({"status": "ignored"}, status=202)
        return web.json_response({"status": "ok"})

    return handle
