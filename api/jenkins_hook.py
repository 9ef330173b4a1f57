"""``POST /hooks/jenkins/{secret}``: the Notification plugin's JSON (aiohttp edge only).

The secret in the path is the only protection (the plugin signs nothing): a
wrong secret, or none configured, answers 404 as if the route did not exist.
A build no step follows is acknowledged (202) and ignored.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

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
            return web.json_response({"error": "payload too large"}, status=413)
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body is not JSON"}, status=400)
        note = parse_notification(data)
        if note is None:
            return web.json_response({"error": "not a Jenkins build notification"}, status=400)
        if not await apply_notification(follower, clients, note):
            return web.json_response({"status": "ignored"}, status=202)
        return web.json_response({"status": "ok"})

    return handle
