"""WebSockets through the real server: snapshot, events to the end, visibility, stuck clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from api.ws import HUB
from tests.api_support import ADMIN, api_server, bearer, make_token, write_standard
from tests.helpers import eventually, write_pipeline

E = "/api/v1/cicd/executions/"


def gated(name: str, marker: Path) -> str:
    return f"""\
name: {name}
steps:
  - name: gate
    run: for i in $(seq 1 600); do [ -f "{marker}" ] && exit 0; sleep 0.05; done; exit 1
  - name: after
    run: echo after
"""


async def receive_all(ws: aiohttp.ClientWebSocketResponse, limit: int = 200) -> list[Any]:
    """Every JSON message until the server closes the socket (at most ``limit``)."""
    messages: list[Any] = []
    for _ in range(limit):
        message = await asyncio.wait_for(ws.receive(), timeout=60)
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        messages.append(json.loads(message.data))
    return messages


def _step_name(event: dict[str, Any]) -> str | None:
    step = event["step"]
    return step if isinstance(step, str) or step is None else str(step["name"])


async def test_snapshot_then_every_event_until_the_end(
    database_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "gated", gated("gated", marker))
    async with api_server(database_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "gated"})).body
        url = f"{api.url}/api/v1/ws/executions/{run['id']}/"
        async with api.http.ws_connect(url, headers=bearer("U222")) as ws:
            first = json.loads((await asyncio.wait_for(ws.receive(), 60)).data)
            assert first["type"] == "snapshot"
            assert first["execution"]["id"] == run["id"]
            assert first["execution"]["status"] == "running"
            assert first["execution"]["steps"][0]["status"] == "running"
            marker.touch()
            events = await receive_all(ws)
            assert ws.closed
        assert [(e["type"], _step_name(e)) for e in events] == [
            ("step.finished", "gate"),
            ("step.started", "after"),
            ("step.log", "after"),
            ("step.finished", "after"),
            ("run.finished", None),
        ]
        assert events[2]["lines"] == ["after"]
        assert events[-1]["status"] == "success"
        assert events[-1]["execution"]["steps"][1]["log_tail"] == "after"
        assert all(e["execution_id"] == run["id"] for e in events)


async def test_a_finished_run_sends_its_snapshot_and_closes(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "simple"})).body
        await api.wait_finished(run["id"])
        token = make_token("U222")
        url = f"{api.url}/api/v1/ws/executions/{run['id']}/?token={token}"
        async with api.http.ws_connect(url) as ws:
            messages = await receive_all(ws)
        assert [m["type"] for m in messages] == ["snapshot"]
        assert messages[0]["execution"]["status"] == "success"


async def test_websocket_refuses_without_token_or_permission(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "restricted"}, user="U111")).body
        cases = [
            (f"/api/v1/ws/executions/{run['id']}/", {}, 401),
            (f"/api/v1/ws/executions/{run['id']}/?token=garbage", {}, 401),
            (f"/api/v1/ws/executions/{run['id']}/", bearer("U222"), 403),
            ("/api/v1/ws/executions/999/", bearer("U222"), 404),
            ("/api/v1/ws/executions/", {}, 401),
        ]
        for path, headers, status in cases:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                async with api.http.ws_connect(api.url + path, headers=headers):
                    pass
            assert caught.value.status == status, path
        await api.wait_finished(run["id"])


async def test_stream_shows_only_runs_the_token_may_see(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        url = f"{api.url}/api/v1/ws/executions/"
        async with (
            api.http.ws_connect(url, headers=bearer("U222")) as mine,
            api.http.ws_connect(url, headers=bearer(ADMIN)) as admin,
        ):
            for ws in (mine, admin):
                assert json.loads((await ws.receive()).data) == {
                    "type": "snapshot",
                    "executions": [],
                }
            hidden = (await api.call("POST", E, json={"pipeline": "restricted"}, user="U111")).body
            await api.wait_finished(hidden["id"])
            shown = (await api.call("POST", E, json={"pipeline": "simple"}, user="U333")).body
            await api.wait_finished(shown["id"])
            admin_seen = await finished_ids(admin, 2)
            mine_seen = await finished_ids(mine, 1)
        assert admin_seen == [hidden["id"], shown["id"]]
        assert mine_seen == [shown["id"]]


async def finished_ids(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[int]:
    """Run ids of the next ``count`` run.finished events (bounded read)."""
    ids: list[int] = []
    for _ in range(500):
        if len(ids) == count:
            break
        event = json.loads((await asyncio.wait_for(ws.receive(), 60)).data)
        if event["type"] == "run.finished":
            ids.append(event["execution_id"])
    return ids


CHATTY_STEP = (
    '  - name: s{i}\n    run: for n in $(seq 1 40); do echo "line $n ' + "x" * 64 + '"; done\n'
)


async def stuck_client(base_url: str, path: str, token: str) -> tuple[Any, Any]:
    """A WebSocket client that completes the handshake and then never reads."""
    parts = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b" 101 " in status, status
    for _ in range(50):
        if await reader.readline() in (b"\r\n", b""):
            break
    return reader, writer


async def test_a_stuck_client_is_dropped_and_slows_nobody(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    steps = "".join(CHATTY_STEP.format(i=i) for i in range(8))
    write_pipeline(pipelines_dir, "chatty", f"name: chatty\nsteps:\n{steps}")
    async with api_server(sqlite_url, pipelines_dir) as api:
        hub = api.server.app[HUB]
        hub.queue_size = 8  # for the stuck client only
        reader, writer = await stuck_client(api.url, "/api/v1/ws/executions/", make_token(ADMIN))
        await eventually(lambda: asyncio.sleep(0, len(hub.clients)), lambda n: n == 1)
        hub.queue_size = 1000
        url = f"{api.url}/api/v1/ws/executions/"
        async with api.http.ws_connect(url, headers=bearer(ADMIN)) as good:
            assert json.loads((await good.receive()).data)["type"] == "snapshot"
            listening = asyncio.ensure_future(finished_ids(good, 20))
            created = await asyncio.gather(
                *[api.call("POST", E, json={"pipeline": "chatty"}) for _ in range(20)]
            )
            ids = [c.body["id"] for c in created]
            for run_id in ids:
                done = await api.wait_finished(run_id, timeout=60)
                assert done["status"] == "success"
            seen = await asyncio.wait_for(listening, 60)
        assert sorted(seen) == sorted(ids)
        assert hub.dropped == 1
        # The server cut the stuck connection: reading it reaches its end.
        for _ in range(100_000):
            try:
                if not await asyncio.wait_for(reader.read(65536), 30):
                    break
            except ConnectionResetError:
                break
        else:
            raise AssertionError("the stuck connection was not closed")
        writer.close()
