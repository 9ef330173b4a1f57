"""Jenkins following: requests per poll interval, and how soon a finished build moves its step.

    python -m bench.bench_jenkins

Runs the real server (SQLite in a temporary folder) against FakeJenkins on
127.0.0.1, with the real python-jenkins client:

1. N builds in flight (N = 1, 10, 100), all running: requests to Jenkins per
   poll interval (steady state, over 20 polls), then while they all finish.
2. Time from a build finishing in Jenkins to its step's transition, by polling
   (poll interval 1 s; expect about half an interval on average) and by the
   Notification webhook (poll interval 1 h, so only the webhook can move it).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from engine.state import StepStatus
from storage.models import CICDTool, StepRun
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import RunningServer, serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    jenkins_settings,
    new_fake,
    service,
    start_run,
    write_jenkins_pipeline,
)

JOB = "marked"
PARAMS = [*DEPLOY_PARAMS, ("ANSFLOW_RUN_STEP", "string", "")]
SECRET = "bench-hook-secret"
POLLS = 20
LATENCY_SAMPLES = 5


async def _until(
    probe: Callable[[], Awaitable[bool]], timeout: float = 120.0, every: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError("bench condition not met")
        await asyncio.sleep(every)


def _count_is(
    wanted: int, phase: str | None = None, status: str = StepStatus.RUNNING.value
) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        steps = await StepRun.filter(kind="jenkins", status=status)
        found = [
            s for s in steps if phase is None or (s.external_state or {}).get("phase") == phase
        ]
        return len(found) == wanted

    return probe


async def requests_per_interval(in_flight: int, interval: float) -> tuple[float, float]:
    """(steady, finishing) requests per poll with `in_flight` builds running."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipelines"
        write_jenkins_pipeline(folder, job=JOB)
        async with new_fake() as fake:
            fake.add_job(JOB, params=PARAMS)
            fake.hold(JOB)
            settings = jenkins_settings(
                f"sqlite://{tmp}/b.db", folder, fake, ANSFLOW_POLL_INTERVAL=str(interval)
            )
            async with serving(settings) as server:
                poller = service(server).poller
                tool = await CICDTool.get(name="jenkins")
                for _ in range(in_flight):
                    await start_run(server)
                await _until(_count_is(in_flight, "building"))
                steady = await _measure(fake, lambda: poller.polls.get(tool.id, 0))
                fake.release(JOB, "SUCCESS")
                start_polls, start_requests = poller.polls.get(tool.id, 0), len(fake.requests)
                await _until(_count_is(in_flight, status=StepStatus.SUCCESS.value))
                polls = max(poller.polls.get(tool.id, 0) - start_polls, 1)
                finishing = (len(fake.requests) - start_requests) / polls
    return steady, finishing


async def _measure(fake: FakeJenkins, polls: Callable[[], int]) -> float:
    first = polls()
    before = len(fake.requests)

    async def enough() -> bool:
        return bool(polls() >= first + POLLS)

    await _until(enough)
    return (len(fake.requests) - before) / (polls() - first)


async def finish_to_transition(webhook: bool) -> list[float]:
    """Seconds from a build finishing to its step ending, LATENCY_SAMPLES times."""
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipelines"
        write_jenkins_pipeline(folder, job=JOB)
        async with new_fake() as fake:
            fake.add_job(JOB, params=PARAMS)
            settings = jenkins_settings(
                f"sqlite://{tmp}/b.db",
                folder,
                fake,
                ANSFLOW_POLL_INTERVAL="3600" if webhook else "1",
                ANSFLOW_JENKINS_HOOK_SECRET=SECRET,
            )
            async with serving(settings) as server, aiohttp.ClientSession() as http:
                for number in range(1, LATENCY_SAMPLES + 1):
                    fake.hold(JOB)
                    run_id = await start_run(server)
                    await _until(_phase_is(run_id, "queued", "building"))
                    build = fake.build(JOB, number)  # started in Jenkins
                    await asyncio.sleep(0.3)
                    began = time.monotonic()
                    fake.release(JOB, "SUCCESS")
                    if webhook:
                        await _notify(http, server, fake, number, build.queue_id)
                    await _until(_ended(run_id))
                    samples.append(time.monotonic() - began)
    return samples


def _phase_is(run_id: int, *phases: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        step = await StepRun.filter(run_id=run_id, kind="jenkins").first()
        return step is not None and (step.external_state or {}).get("phase") in phases

    return probe


def _ended(run_id: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        step = await StepRun.filter(run_id=run_id, kind="jenkins").first()
        return step is not None and step.status != StepStatus.RUNNING.value

    return probe


async def _notify(
    http: aiohttp.ClientSession, server: RunningServer, fake: FakeJenkins, number: int, queue: int
) -> None:
    body = {
        "name": JOB,
        "url": f"job/{JOB}/",
        "build": {
            "full_url": f"{fake.url}job/{JOB}/{number}/",
            "number": number,
            "queue_id": queue,
            "phase": "COMPLETED",
            "status": "SUCCESS",
        },
    }
    async with http.post(f"{server.url}/hooks/jenkins/{SECRET}", json=body) as response:
        response.raise_for_status()


async def main() -> None:
    print("Requests to Jenkins per poll interval (one tool, one job)")
    header = ("builds in flight", "all running", "while finishing", "one per build")
    print(f"{header[0]:>17} {header[1]:>12} {header[2]:>16} {header[3]:>14}")
    for n in (1, 10, 100):
        steady, finishing = await requests_per_interval(n, interval=0.2)
        print(f"{n:>17} {steady:>12.2f} {finishing:>16.2f} {n:>14}")
    print()
    print("Build finished -> step transition (seconds)")
    for label, webhook in (("polling (interval 1 s)", False), ("webhook", True)):
        samples = await finish_to_transition(webhook)
        print(
            f"  {label:<24} median {statistics.median(samples):.3f}"
            f"  max {max(samples):.3f}  (n={len(samples)})"
        )


if __name__ == "__main__":
    # A poll still running when the next is due is skipped (max_instances=1): expected.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    asyncio.run(main())
