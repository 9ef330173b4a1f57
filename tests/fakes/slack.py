"""A fake Slack Web API: a real aiohttp server on 127.0.0.1 for the real client.

    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.url)
        await client.chat_postMessage(channel="C0000000001", text="hi")
        assert fake.messages("C0000000001")[0].text == "hi"

Answers with Slack's shapes and error codes, as Slack's Web API does.
Failures are injected explicitly and are bounded: `fail_next` (429 with
Retry-After, 500, or any Slack error), `go_down`/`come_up` (503 for every
request), `delay` (slow answers; the call has already taken effect, as when
Slack is slow to reply), `delay_visibility` (a posted message shows up in
conversations.history/replies only some time after the call answered) and `rate_limit_per_channel` (429 when
chat.postMessage outpaces a per-channel budget). A failed call changes no
state. Keep instances function-scoped (pytest-asyncio loop scopes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .slack_store import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Call,
    ChannelPacer,
    Ephemeral,
    SlackError,
    SlackStore,
    StoredMessage,
    UploadedFile,
)
from .slack_views import OpenedView, PublishedHome, ViewsApi

__all__ = [
    "Call",
    "Ephemeral",
    "FakeSlack",
    "OpenedView",
    "PublishedHome",
    "StoredMessage",
    "UploadedFile",
]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

DEFAULT_SCOPES = (
    "commands,chat:write,chat:write.public,users:read,channels:history,groups:history,files:write"
)
_ERROR_FOR_STATUS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None
    times: int


class FakeSlack:
    """Fake Slack Web API server. Use `async with FakeSlack() as fake:`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        ws_url: str | None = None,
        scopes: str = DEFAULT_SCOPES,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.ws_url = ws_url
        self.scopes = scopes
        self.calls: list[Call] = []
        self.store = SlackStore()
        self.delay_seconds = 0.0
        self._method_delays: dict[str, float] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._down_until: float | None = None
        self._pacer: ChannelPacer | None = None
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "apps.connections.open": self._connections_open,
            "users.info": self._users_info,
        }
        self.views_api = ViewsApi(self.store)
        self._handlers.update(self.views_api.handlers())

    # lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}/"

    @property
    def url(self) -> str:
        """Give this to `AsyncWebClient(base_url=...)`."""
        return self.base + "api/"

    # inspection

    def calls_for(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str) -> list[StoredMessage]:
        """Every message in the channel, thread replies included, oldest first."""
        return self.store.channel_messages(channel)

    def thread(self, channel: str, ts: str) -> list[StoredMessage]:
        """The thread's root then its replies, oldest first."""
        channel_id = self.store.resolve(channel)
        return [self.store.find(channel_id, ts), *self.store.replies_of(channel_id, ts)]

    @property
    def ephemerals(self) -> list[Ephemeral]:
        return self.store.ephemerals

    @property
    def files(self) -> list[UploadedFile]:
        """Uploads that reached files.completeUploadExternal."""
        return [f for f in self.store.files.values() if f.completed]

    def channel_id(self, name: str) -> str:
        """The id the fake gives `#name` (ids pass through)."""
        return self.store.resolve(name)

    def add_user(self, user_id: str, name: str, real_name: str | None = None) -> None:
        """Make `users.info` answer with these names."""
        self.store.add_user(user_id, name, real_name)

    def issue_trigger(self) -> str:
        """A fresh trigger_id, as Slack puts in each command and click (3 s, single use)."""
        return self.views_api.issue_trigger()

    @property
    def opened_views(self) -> list[OpenedView]:
        return [v for v in self.views_api.views.values() if v.trigger_id is not None]

    def home_of(self, user: str) -> dict[str, Any] | None:
        """The Home view last published for ``user``."""
        return self.views_api.home_of(user)

    # failure injection

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 2,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """The next `times` calls of `method` fail; nothing is stored.

        429 carries `Retry-After` and error `ratelimited`; 500 `internal_error`;
        `status=200, error="..."` gives any Slack error with `ok: false`.
        """
        code = error or _ERROR_FOR_STATUS.get(status, "fatal_error")
        wait = retry_after if status == 429 else None
        self._failures.setdefault(method, []).append(_Failure(status, code, wait, times))

    def go_down(self, seconds: float | None = None) -> None:
        """Answer 503 to everything, for `seconds` or until `come_up()`."""
        self._down_until = math.inf if seconds is None else time.monotonic() + seconds

    def come_up(self) -> None:
        self._down_until = None

    def delay(self, seconds: float, method: str | None = None) -> None:
        """Hold answers back by `seconds` (all methods, or one)."""
        if method is None:
            self.delay_seconds = seconds
        else:
            self._method_delays[method] = seconds

    def delay_visibility(self, seconds: float) -> None:
        """Messages posted from now on reach conversations.history/replies `seconds` later."""
        self.store.visibility_delay = max(seconds, 0.0)

    def rate_limit_per_channel(self, max_per_second: float | None = 1.0, burst: int = 1) -> None:
        """chat.postMessage beyond this per-channel pace gets 429; None turns it off."""
        self._pacer = None if max_per_second is None else ChannelPacer(max_per_second, burst)

    # HTTP

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _read_args(request)
        status, body, headers = self._gate(method, args, request)
        if status == 200 and not body:
            try:
                body = await self._handlers[method](args)
            except SlackError as err:
                body = {"ok": False, "error": err.code}
            headers = {"x-oauth-scopes": self.scopes}
        error = None if body.get("ok") else str(body.get("error"))
        self.calls.append(Call(method, args, time.monotonic(), status, error))
        await self._hold(method)
        return web.json_response(body, status=status, headers=headers)

    def _gate(
        self, method: str, args: dict[str, Any], request: web.Request
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Decide failures before any handler runs, so failures store nothing."""
        if self._is_down():
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        queue = self._failures.get(method)
        if queue:
            failure = queue[0]
            failure.times -= 1
            if failure.times <= 0:
                queue.pop(0)
            headers = (
                {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            )
            return failure.status, {"ok": False, "error": failure.error}, headers
        if method not in self._handlers:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        auth_error = self._check_token(method, args, request)
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, {}
        if method == "chat.postMessage" and self._pacer is not None:
            retry = self._pacer.take(self.store.channel_key(args.get("channel")))
            if retry is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry)}
        return 200, {}, {}

    def _check_token(self, method: str, args: dict[str, Any], request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else args.get("token")
        if not token:
            return "not_authed"
        if token not in (self.bot_token, self.app_token):
            return "invalid_auth"
        wants_app_token = method == "apps.connections.open"
        if (token == self.app_token) != wants_app_token:
            return "not_allowed_token_type"
        return None

    def _is_down(self) -> bool:
        if self._down_until is None:
            return False
        if time.monotonic() >= self._down_until:
            self._down_until = None
            return False
        return True

    async def _hold(self, method: str) -> None:
        seconds = self._method_delays.get(method, self.delay_seconds)
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """The pre-signed upload URL: no token; answers text/plain like Slack."""
        upload = self.store.files.get(request.match_info["file_id"])
        if self._is_down():
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        if upload is None:
            return web.Response(status=404, text="file not found", content_type="text/plain")
        upload.content = await request.read()
        self.calls.append(
            Call("upload", {"file_id": upload.id, "length": len(upload.content)}, time.monotonic())
        )
        return web.Response(text=f"OK - {len(upload.content)}", content_type="text/plain")

    # methods

    async def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "ansflow",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    async def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.store.post(args)
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "message": msg.to_api()}

    async def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.store.update(args)
        return {
            "ok": True,
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": msg.to_api(),
        }

    async def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self.store.post_ephemeral(args).message_ts}

    async def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self.store.history(args)
        return {
            "ok": True,
            "messages": messages,
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    async def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self.store.replies(args)
        return {
            "ok": True,
            "messages": messages,
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    async def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        upload = self.store.new_file(args.get("filename"), args.get("length"))
        return {"ok": True, "upload_url": f"{self.base}upload/{upload.id}", "file_id": upload.id}

    async def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        done = self.store.complete_files(args)
        return {
            "ok": True,
            "files": [{"id": f.id, "name": f.filename, "title": f.title} for f in done],
        }

    async def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.ws_url or f"ws://127.0.0.1:{self._port}/link"}

    async def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user": self.store.user_info(args.get("user"))}


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Query string, then a JSON or form body on top; unknown fields are kept."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            args.update(body)
    elif request.can_read_body:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args
