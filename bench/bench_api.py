"""REST API and WebSocket figures: ``python -m bench.bench_api``.

1. ``POST /api/v1/cicd/executions/`` latency (p50/p95) with 20 concurrent clients.
2. Event latency from a state transition (stamped inside its database
   transaction, via an in-transaction bus subscriber) to its delivery on each
   of 100 connected WebSocket clients.

The server, the engine and the clients share one process and event loop
(SQLite in a temporary folder), so figures include the clients' own work.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ansflow.app import CORE, build_app
from ansflow.settings import load_settings
from api.auth import create_token
from engine.events import Event

SECRET = "bench-secret-bench-secret-bench-secret!"
ADMIN = "UBENCH"
CLIENTS = 20
REQUESTS_PER_CLIENT = 25
WS_CLIENTS = 100
WS_RUNS = 20
PIPELINE = """\
name: quick
steps:
  - {name: one, run: "true"}
  - {name: two, run: "true"}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


async def start(folder: Path) -> tuple[web.AppRunner, str, web.Application]:
    pipelines = folder / "pipelines"
    pipelines.mkdir()
    (pipelines / "quick.yml").write_text(PIPELINE)
    settings = load_settings(
        {
            "ANSFLOW_DATABASE_URL": f"sqlite://{folder / 'bench.db'}",
            "ANSFLOW_PIPELINES_DIR": str(pipelines),
            "ANSFLOW_JWT_SECRET": SECRET,
            "ANSFLOW_ADMINS": ADMIN,
        }
    )
    app = build_app(settings, workdir=folder)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", app


async def bench_create(url: str, app: web.Application, clients: int = CLIENTS) -> None:
    headers = {"Authorization": f"Bearer {create_token(SECRET, ADMIN, 3600)}"}
    latencies: list[float] = []
    run_ids: list[int] = []

    async def client(http: aiohttp.ClientSession) -> None:
        for _ in range(REQUESTS_PER_CLIENT):
            began = time.perf_counter()
            async with http.post(
                f"{url}/api/v1/cicd/executions/", headers=headers, json={"pipeline": "quick"}
            ) as resp:
                body = await resp.json()
                assert resp.status == 201, body
            latencies.append(time.perf_counter() - began)
            run_ids.append(body["id"])

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*[client(http) for _ in range(clients)])
    engine = app[CORE].engine
    for run_id in run_ids:
        await engine.wait_finished(run_id, timeout=120)
    print(
        f"POST create, {clients} concurrent client(s), {len(latencies)} requests: "
        f"p50 {ms(percentile(latencies, 0.5))}, p95 {ms(percentile(latencies, 0.95))}, "
        f"max {ms(max(latencies))}"
    )


async def bench_events(url: str, app: web.Application) -> None:
    core = app[CORE]
    stamped: dict[tuple[int, str, str], float] = {}

    async def stamp(event: Event, conn: Any) -> None:
        step = getattr(event, "step", None)
        stamped[(event.run.id, event.type, step.path if step else "")] = time.perf_counter()

    core.bus.subscribe_in_tx(stamp)
    headers = {"Authorization": f"Bearer {create_token(SECRET, ADMIN, 3600)}"}
    delays: list[float] = []
    finished = 0
    done = asyncio.Event()

    async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal finished
        async for message in ws:
            now = time.perf_counter()
            event = json.loads(message.data)
            if event["type"] == "snapshot":
                continue
            key = (event["execution_id"], event["type"], (event["step"] or {}).get("path", ""))
            if key in stamped:
                delays.append(now - stamped[key])
            if event["type"] == "run.finished":
                finished += 1
                if finished == WS_CLIENTS * WS_RUNS:
                    done.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = [
            await http.ws_connect(f"{url}/api/v1/ws/executions/", headers=headers)
            for _ in range(WS_CLIENTS)
        ]
        for ws in sockets:
            await ws.receive()  # snapshot
        listeners = [asyncio.ensure_future(listen(ws)) for ws in sockets]
        for _ in range(WS_RUNS):
            async with http.post(
                f"{url}/api/v1/cicd/executions/", headers=headers, json={"pipeline": "quick"}
            ) as resp:
                assert resp.status == 201
        await asyncio.wait_for(done.wait(), 120)
        for ws in sockets:
            await ws.close()
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    print(
        f"Event latency, {WS_CLIENTS} WebSocket clients, {WS_RUNS} runs, "
        f"{len(delays)} deliveries: p50 {ms(percentile(delays, 0.5))}, "
        f"p95 {ms(percentile(delays, 0.95))}, max {ms(max(delays))}, "
        f"mean {ms(statistics.fmean(delays))}"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        runner, url, app = await start(Path(folder))
        try:
            await bench_create(url, app, clients=1)
            await bench_create(url, app)
            await bench_events(url, app)
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
