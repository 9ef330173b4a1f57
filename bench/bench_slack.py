"""Slack figures: ``python -m bench.bench_slack``.

1. Ack latency (p50/p95/max) of 40 concurrent signed ``/ansflow run`` over HTTP.
2. Slack calls per run of a 5-step pipeline, at production pacing, for fast
   steps and for steps that take a second each.
3. Highest sustained ``chat.postMessage`` rate to one channel (production
   pacing: ≈1/s with bursts of 3), over 10 s windows and overall.

The real server (SQLite in a temporary folder) talks to the fake Slack Web
API of the tests; both share one process and event loop with the clients.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bot.notifier import Pacing
from storage.models import OutboxMessage, Run
from tests.fakes.slack import FakeSlack
from tests.helpers import write_pipeline
from tests.slack_signing import SlackHarness, command_body, signed_headers, slack_server

CONCURRENT = 40
CHANNEL = "C0BENCH001"
FIVE_FAST = "name: five\nsteps:\n" + "".join(f"  - {{name: s{i}, run: 'true'}}\n" for i in range(5))
FIVE_SLOW = "name: five-slow\nsteps:\n" + "".join(
    f"  - {{name: s{i}, run: 'sleep 1'}}\n" for i in range(5)
)
ONE = "name: one\nsteps:\n  - {name: only, run: 'true'}\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drained(runs: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await Run.filter(status__in=["success", "failed", "cancelled"]).count()
        pending = await OutboxMessage.filter(state="pending").count()
        if done >= runs and pending == 0:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("outbox not drained")


async def ack_latency(slack: SlackHarness) -> None:
    await slack.command("help")  # warm up the connection pool and the catalog
    connector = aiohttp.TCPConnector(limit=CONCURRENT)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> float:
            body = command_body("run one", channel=f"C0ACK{i:05d}")
            started = time.perf_counter()
            async with http.post(
                f"{slack.server.url}/slack/events", data=body, headers=signed_headers(body)
            ) as res:
                await res.read()
                assert res.status == 200
            return time.perf_counter() - started

        latencies = await asyncio.gather(*[one(i) for i in range(CONCURRENT)])
    print(
        f"ack latency, {CONCURRENT} concurrent /ansflow run: "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


async def calls_per_run(slack: SlackHarness, pipeline: str, label: str, channel: str) -> None:
    before = len(slack.fake.calls)
    runs = await Run.all().count() + 1
    await slack.command(f"run {pipeline}", channel=channel)
    await drained(runs, timeout=120)
    calls = Counter(c.method for c in slack.fake.calls[before:] if c.ok)
    posts = calls["chat.postMessage"]
    print(
        f"Slack calls for one 5-step run ({label}): {sum(calls.values())} "
        f"({posts} chat.postMessage, {calls['chat.update']} chat.update); "
        f"target ≤ 2 + steps = 7"
    )


async def sustained_rate(slack: SlackHarness, runs: int) -> None:
    first = len(slack.fake.calls)
    total = await Run.all().count() + runs
    for _ in range(runs):
        await slack.command("run one", channel=CHANNEL)
    await drained(total, timeout=300)
    stamps = sorted(
        c.at
        for c in slack.fake.calls[first:]
        if c.ok and c.method == "chat.postMessage" and c.args.get("channel") == CHANNEL
    )
    window = 10.0
    best = max(sum(1 for t in stamps if s <= t < s + window) for s in stamps)
    span = stamps[-1] - stamps[0]
    overall = (len(stamps) - 1) / span if span > 0 else float("nan")
    print(
        f"messages to one channel: {len(stamps)} posts in {span:.1f} s; "
        f"highest over any 10 s window {best / window:.2f}/s; overall {overall:.2f}/s"
    )


async def run_all() -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        pipelines = Path(folder) / "pipelines"
        for name, text in [("five", FIVE_FAST), ("five-slow", FIVE_SLOW), ("one", ONE)]:
            write_pipeline(pipelines, name, text)
        url = f"sqlite://{folder}/bench.db"
        async with FakeSlack() as fake, slack_server(url, pipelines, fake, Pacing()) as slack:
            await ack_latency(slack)
            await drained(CONCURRENT, timeout=300)
            await calls_per_run(slack, "five", "steps of a few ms", "C0FIVE0001")
            await calls_per_run(slack, "five-slow", "steps of 1 s", "C0FIVE0002")
            await sustained_rate(slack, runs=12)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run_all())


if __name__ == "__main__":
    main()
