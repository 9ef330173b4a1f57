"""A fake Slack Socket Mode server: a real aiohttp WebSocket on 127.0.0.1 for the real client.

    async with FakeSlack() as web, FakeSocketMode() as socket:
        web.ws_url = socket.url          # what apps.connections.open hands out
        ...                              # start the bot; it connects
        await socket.wait_connected()
        envelope_id = await socket.slash_command({"command": "/ansflow", ...})
        ack = await socket.wait_ack(envelope_id, timeout=3)

Speaks what ``slack_sdk.socket_mode.aiohttp.SocketModeClient`` expects: a
``hello`` on connect; envelopes ``{"envelope_id", "type", "payload",
"accepts_response_payload"[, "retry_attempt", "retry_reason"]}``; acks
``{"envelope_id"[, "payload"]}`` from the client are recorded; a
``disconnect`` message asks the client to reconnect (it calls
``apps.connections.open`` again). Like Slack, each envelope goes to one open
connection (here: the newest). Keep instances function-scoped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

APP_ID = "A0APP00001"


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float  # time.monotonic() when it arrived


class FakeSocketMode:
    """Fake Socket Mode endpoint. Use `async with FakeSocketMode() as socket:`."""

    def __init__(self, *, app_id: str = APP_ID) -> None:
        self.app_id = app_id
        self.connects = 0  # WebSocket handshakes accepted, ever
        self.acks: list[Ack] = []
        self.other: list[Any] = []  # anything else the client sent (should stay empty)
        self._open: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSocketMode:
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
    def url(self) -> str:
        """Give this to `FakeSlack(ws_url=...)` (or set `fake.ws_url`)."""
        if self._port is None:
            raise RuntimeError("FakeSocketMode is not started")
        return f"ws://127.0.0.1:{self._port}/link?ticket=fake-ticket"

    @property
    def open_connections(self) -> int:
        return sum(1 for ws in self._open if not ws.closed)

    # waiting (always bounded)

    async def wait_connected(self, connects: int = 1, timeout: float = 10.0) -> None:
        """Until `connects` handshakes have happened and one connection is open."""
        await self._wait(lambda: self.connects >= connects and self.open_connections > 0, timeout)

    async def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> Ack:
        """The first ack for `envelope_id`; fails after `timeout` seconds (Slack's deadline: 3)."""
        await self._wait(lambda: bool(self.acks_for(envelope_id)), timeout)
        return self.acks_for(envelope_id)[0]

    def acks_for(self, envelope_id: str) -> list[Ack]:
        return [a for a in self.acks if a.envelope_id == envelope_id]

    # sending

    async def send_envelope(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Deliver one envelope to the newest open connection; returns its envelope_id.

        Pass an earlier `envelope_id` (and `retry_attempt`) to redeliver it.
        """
        eid = envelope_id or f"fake-envelope-{next(self._ids):04d}"
        message: dict[str, Any] = {
            "envelope_id": eid,
            "type": type_,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
        }
        if retry_attempt is not None:
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = retry_reason or "timeout"
        await self._send(message)
        return eid

    async def slash_command(self, payload: dict[str, Any], **options: Any) -> str:
        return await self.send_envelope(
            "slash_commands", payload, accepts_response_payload=True, **options
        )

    async def interactive(self, payload: dict[str, Any], **options: Any) -> str:
        return await self.send_envelope("interactive", payload, **options)

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to move to a new connection (Slack does this every few hours)."""
        await self._send({"type": "disconnect", "reason": reason, "debug_info": _debug_info()})

    # internals

    async def _send(self, message: dict[str, Any]) -> None:
        live = [ws for ws in self._open if not ws.closed]
        if not live:
            raise AssertionError("no open Socket Mode connection")
        await live[-1].send_str(json.dumps(message))

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"not within {timeout}s: connects={self.connects} "
                    f"open={self.open_connections} acks={self.acks} other={self.other}"
                ) from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connects += 1
        self._open.append(ws)
        hello = {
            "type": "hello",
            "num_connections": self.open_connections,
            "debug_info": {**_debug_info(), "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._record(msg.data)
                    await self._notify()
        finally:
            self._open.remove(ws)
            await self._notify()
        return ws

    def _record(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            self.other.append(raw)
            return
        eid = data.get("envelope_id") if isinstance(data, dict) else None
        if not isinstance(eid, str):
            self.other.append(data)
            return
        payload = data.get("payload")
        self.acks.append(Ack(eid, payload if isinstance(payload, dict) else None, time.monotonic()))


def _debug_info() -> dict[str, Any]:
    return {"host": "applink-fake-1", "build_number": 1}
