"""PostgreSQL ``LISTEN``/``NOTIFY`` between replicas.

:func:`notify` sends on the shared Tortoise connection (delivered when it
commits: at once outside a transaction). :class:`Listener` holds one dedicated
asyncpg connection, reconnects with bounded backoff when it drops, and hands
each payload to a callback. A listener misses what was sent while it was
disconnected, so every signal also has a slow poll behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from tortoise import connections

from storage.db import connect_options
from storage.round_writes import open_writes

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7900
NOTIFY_CHUNK = 50  # notices per statement
RECONNECT_BASE = 0.5
RECONNECT_CAP = 10.0


async def notify(channel: str, payload: str, conn: Any = None) -> None:
    """Send ``payload``; on ``conn`` (a transaction) it is delivered when that commits."""
    await notify_all(channel, [payload], conn if conn is not None else connections.get("default"))


async def notify_all(channel: str, payloads: list[str], conn: Any) -> None:
    """Send each payload, in order, in as few statements as it takes.

    On an engine round's transaction they join the round's own statement
    (``storage.round_writes``): no round trip of their own.
    """
    if any(len(p.encode()) > MAX_PAYLOAD for p in payloads):
        raise ValueError("NOTIFY payload too large")
    writes = open_writes(conn)
    if writes is not None:
        writes.notify(channel, payloads)
        return
    for start in range(0, len(payloads), NOTIFY_CHUNK):
        chunk = payloads[start : start + NOTIFY_CHUNK]
        calls = ", ".join(f"pg_notify($1, ${i + 2})" for i in range(len(chunk)))
        await conn.execute_query(f"SELECT {calls}", [channel, *chunk])


class Listener:
    def __init__(self, url: str, channel: str, on_payload: Callable[[str], None]) -> None:
        self._options = connect_options(url)
        self._channel = channel
        self._on_payload = on_payload
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_payload(payload)
        except Exception:  # a bad payload must not stop listening
            log.exception("replica signal could not be handled")

    async def _run(self) -> None:
        import asyncpg

        failures = 0
        while not self._stopping:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await asyncio.wait_for(asyncpg.connect(**self._options), timeout=10)
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(self._channel, self._received)
                failures = 0
                self.connected.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await lost.wait()
                    if not lost.is_set():
                        await asyncio.wait_for(conn.execute("SELECT 1"), timeout=5)
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("replica signals: lost the listening connection (%s)", exc)
            self.connected.clear()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.terminate()
            await asyncio.sleep(min(RECONNECT_CAP, RECONNECT_BASE * 2 ** min(failures, 10)))


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _conn: event.set()
