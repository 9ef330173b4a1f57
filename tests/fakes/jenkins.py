"""A fake Jenkins: a real aiohttp server on 127.0.0.1 that the real python-jenkins talks to.

It answers the requests python-jenkins 1.8 makes the way Jenkins 2.4xx does
(status codes, headers, JSON shapes, `?tree=`), and adds knobs for tests:
holding and releasing builds, queue delays, slowness and outages. Every
request is recorded in `requests`.

Usage (async test; python-jenkins runs in worker threads, the server on the
test's loop)::

    async with FakeJenkins() as fake:
        fake.add_job("deploy-web", params=[("VERSION", "string", "1.0")])
        ...

From synchronous code use `start_in_thread()` / `stop_in_thread()`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from tests.fakes.jenkins_routes import route
from tests.fakes.jenkins_state import Build, JenkinsState, Job, ParamSpec, Refused, Script

T = TypeVar("T")
VERSION = "2.462"


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]


@dataclass
class _User:
    token: str
    allowed: bool


class FakeJenkins:
    def __init__(self, user: str = "admin", token: str = "jtoken", crumbs: bool = True) -> None:
        self.state = JenkinsState()
        self.crumbs = crumbs
        self.crumb = secrets.token_hex(16)
        self.requests: list[RecordedRequest] = []
        self._users = {user: _User(token, True)}
        self._delay = 0.0
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeJenkins is not started")
        return f"http://127.0.0.1:{self._port}/"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def go_down(self) -> None:
        """Close the listener and every open connection: clients get 'connection refused'."""
        await self.stop()

    async def come_up(self) -> None:
        """Listen again on the same port, with the same jobs, queue and builds."""
        if self._runner is None:
            await self.start()

    async def __aenter__(self) -> FakeJenkins:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Serve from a thread with its own loop, for synchronous callers."""
        loop = asyncio.new_event_loop()
        self._thread_loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-jenkins", daemon=True)
        self._thread.start()
        self.run_sync(self.start(), timeout)

    def stop_in_thread(self, timeout: float = 10.0) -> None:
        loop, thread = self._thread_loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.run_sync(self.stop(), timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._thread_loop = self._thread = None

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run e.g. `go_down()` on the server's thread (thread mode only)."""
        if self._thread_loop is None:
            coro.close()
            raise RuntimeError("run_sync needs start_in_thread()")
        return asyncio.run_coroutine_threadsafe(coro, self._thread_loop).result(timeout)

    # -- knobs for tests --------------------------------------------------------

    def add_user(self, user: str, token: str, *, allowed: bool = True) -> None:
        """A user whose token is accepted; `allowed=False` gets 403 on everything."""
        self._users[user] = _User(token, allowed)

    def add_job(
        self,
        name: str,
        params: Iterable[ParamSpec] = (),
        *,
        disabled: bool = False,
        kind: str = "freestyle",
    ) -> None:
        """A job; `name` may be a folder path ("team/app/deploy"); kind: freestyle, pipeline."""
        with self.state.lock:
            self.state.add_job(name, params, disabled=disabled, kind=kind)

    def script(
        self, job: str, result: str = "SUCCESS", duration: float = 0.2, console: str = ""
    ) -> None:
        """Builds of `job` started from now on run `duration` s, print `console`, end `result`."""
        with self.state.lock:
            self.state.job(job).script = Script(result, duration, console)

    def set_disabled(self, job: str, disabled: bool = True) -> None:
        with self.state.lock:
            self.state.job(job).disabled = disabled

    def hold(self, job: str) -> None:
        """Builds of `job` keep running (whatever their duration) until `release`/`finish`."""
        with self.state.lock:
            self.state.job(job).hold = True

    def release(self, job: str, result: str | None = None) -> None:
        """End the hold and finish the job's running builds now (with `result` or the script's)."""
        with self.state.lock:
            self.state.release(job, result)

    def finish(self, job: str, number: int, result: str) -> None:
        """Finish one running build now."""
        with self.state.lock:
            self.state.finish(self.state.build(job, number), result)

    def hold_queue(self, job: str) -> None:
        """Queue items of `job` stay waiting ("Waiting for next available executor")."""
        with self.state.lock:
            self.state.job(job).hold_queue = True

    def release_queue(self, job: str) -> None:
        with self.state.lock:
            self.state.job(job).hold_queue = False

    def append_console(self, job: str, number: int, text: str) -> None:
        with self.state.lock:
            self.state.build(job, number).extra_console.extend(text.splitlines())

    def rotate_crumb(self) -> None:
        """A new crumb, as after a Jenkins restart: clients holding the old one get 403."""
        self.crumb = secrets.token_hex(16)

    def slow(self, seconds: float) -> None:
        """Delay every response by `seconds` (0 to stop)."""
        self._delay = max(seconds, 0.0)

    @property
    def queue_delay(self) -> float:
        return self.state.queue_delay

    @queue_delay.setter
    def queue_delay(self, seconds: float) -> None:
        self.state.queue_delay = seconds

    @property
    def queue_item_ttl(self) -> float:
        return self.state.queue_item_ttl

    @queue_item_ttl.setter
    def queue_item_ttl(self, seconds: float) -> None:
        self.state.queue_item_ttl = seconds

    def build(self, job: str, number: int) -> Build:
        """The fake's own record of a build (after bringing the clock up to date)."""
        with self.state.lock:
            self.state.advance()
            return self.state.build(job, number)

    def job(self, name: str) -> Job:
        with self.state.lock:
            return self.state.job(name)

    def count(self, path_prefix: str | None = None, method: str | None = None) -> int:
        """Requests seen whose path starts with `path_prefix` (leading "/" optional)."""
        prefix = None if path_prefix is None else "/" + path_prefix.lstrip("/")
        return sum(
            1
            for r in list(self.requests)
            if (prefix is None or r.path.startswith(prefix))
            and (method is None or r.method == method)
        )

    # -- HTTP -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query)))
        if self._delay:
            await asyncio.sleep(self._delay)
        user = self._authorize(request)
        if request.method == "GET" and request.path == "/":
            # The dashboard answers without credentials, so python-jenkins get_version()
            # proves nothing about them.
            response = web.Response(text="<html>Dashboard [Jenkins]</html>")
        elif isinstance(user, web.Response):
            response = user
        else:
            with self.state.lock:
                try:
                    self.state.advance()
                    response = route(
                        self.state, self.url, self.crumb if self.crumbs else None, request, user
                    )
                except Refused as exc:
                    response = web.Response(status=exc.status, text=exc.message)
        response.headers["X-Jenkins"] = VERSION
        return response

    def _authorize(self, request: web.Request) -> str | web.Response:
        """The authenticated user, or the refusal to send."""
        user = self._user(request.headers.get("Authorization", ""))
        if isinstance(user, web.Response):
            return user
        if not self._users[user].allowed:
            return web.Response(status=403, text=f"{user} is missing the Overall/Read permission")
        if request.method == "POST" and self.crumbs:
            sent = request.headers.get("Jenkins-Crumb", "")
            if not hmac.compare_digest(sent.encode(), self.crumb.encode()):
                return web.Response(status=403, text="No valid crumb was included in the request")
        return user

    def _user(self, header: str) -> str | web.Response:
        scheme, _, encoded = header.partition(" ")
        denied = web.Response(
            status=401,
            text="Authentication required",
            headers={"WWW-Authenticate": 'Basic realm="Jenkins"'},
        )
        if scheme.lower() != "basic":
            return denied
        try:
            user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return denied
        known = self._users.get(user)
        if known is None or not hmac.compare_digest(known.token.encode(), token.encode()):
            denied.text = f"Invalid password/token for user: {user}"
            return denied
        return user
