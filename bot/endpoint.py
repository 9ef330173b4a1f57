"""``POST /slack/events``: verify the signature, parse the body right, hand it to Bolt.

Bolt 1.30 has no aiohttp handler class, and its body parser takes any form
body that merely contains the text ``payload`` (``/ansflow run payload-svc``)
for an interactivity request and answers 404. So the signature is checked
here first (401 and nothing else on failure: missing or wrong signature,
timestamp more than five minutes off), the body is parsed by
:func:`parse_body`, and Bolt gets a request whose ``body`` is already right.
Bolt's own signature verification still runs on the raw body.

After the signature, the Events API's ``url_verification`` challenge is
answered here. Nothing here touches the database, so Slack's ack never waits
for it: that a request acts once is decided by the listeners, after the ack
(``bot.once``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)


def parse_body(raw: str, content_type: str | None) -> dict[str, Any]:
    """A Slack request body as Bolt expects it: slash-command fields, or the ``payload`` JSON.

    Only a form field *named* ``payload`` makes an interactivity request; the
    word anywhere else (a command's text) is ordinary text.
    """
    if not raw:
        return {}
    if content_type == "application/json" or raw.lstrip().startswith("{"):
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {}
    fields = dict(parse_qsl(raw, keep_blank_values=True))
    if "payload" in fields and "command" not in fields:
        payload = json.loads(fields["payload"])
        return payload if isinstance(payload, dict) else {}
    return fields


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def events_handler(bolt: AsyncApp, signing_secret: str) -> Handler:
    verifier = SignatureVerifier(signing_secret)

    async def slack_events(request: web.Request) -> web.StreamResponse:
        raw = await request.text()  # bounded by the app's client_max_size
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (
            timestamp.isdigit()
            and signature
            and verifier.is_valid(body=raw, timestamp=timestamp, signature=signature)
        ):
            return web.Response(status=401, text="invalid request signature")
        bolt_request = await to_bolt_request(request)
        try:
            bolt_request.body = parse_body(raw, bolt_request.content_type)
        except ValueError:
            return web.Response(status=400, text="malformed request body")
        body = bolt_request.body
        if body.get("type") == "url_verification":
            return web.json_response({"challenge": str(body.get("challenge") or "")})
        bolt_request.context = build_async_context(AsyncBoltContext({}), bolt_request.body)
        response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    return slack_events
