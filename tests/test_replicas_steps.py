"""Local steps across real replicas: start-up, kill -9, restart, SIGTERM drain, WebSocket.

Runs are created over REST at one replica, so that replica runs their local
steps; the tests then start, kill, restart or stop replicas and look at what
the database, the REST API and the steps' own processes say.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.slack import FakeSlack
from tests.helpers import write_pipeline
from tests.pg_server import ThrowawayPostgres
from tests.replicas import LEASE_SECONDS, Replicas, kill_group, replica_set

pytestmark = pytest.mark.postgres

# Take-over of a dead replica's work: its lease runs out, then a sweep adopts it.
TAKE_OVER_LIMIT = 3 * LEASE_SECONDS + 6


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def counting(name: str, marker: Path, seconds: float, retry: bool = False) -> str:
    """One step that appends a line to ``marker`` then sleeps; a step after it."""
    flag = "\n    retry_on_restart: true" if retry else ""
    return f"""\
name: {name}
steps:
  - name: work
    run: "echo $ANSFLOW_RUN_ID >> '{marker}'; sleep {seconds:g}"{flag}
  - name: after
    run: echo after
"""


def second_time_lucky(name: str, marker: Path) -> str:
    """Hangs the first time it runs; the second run of the step succeeds at once."""
    return f"""\
name: {name}
steps:
  - name: work
    retry_on_restart: true
    run: "echo run >> '{marker}'; [ $(wc -l < '{marker}') -ge 2 ] && exit 0; sleep 120"
  - name: after
    run: echo after
"""


def lines(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


async def running_pid(group: Replicas, run_id: int, name: str = "work") -> int:
    await group.step_reaches(run_id, name, ["running"])

    async def pid() -> Any:
        return (await group.db.step(run_id, name))["external_id"]

    return int(await group.until(pid, what=f"pid of {name} in run {run_id}"))


async def test_starting_a_replica_leaves_the_live_runs_of_the_other_alone(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "work.marker"
    write_pipeline(pipelines_dir, "plain", counting("plain", marker, 6))
    write_pipeline(pipelines_dir, "retried", counting("retried", marker, 6, retry=True))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, start=False) as group:
        await group.start(0)
        runs = [await group.create_run(0, "plain"), await group.create_run(0, "retried")]
        pids = [await running_pid(group, run_id) for run_id in runs]
        try:
            await group.start(1)
            for run_id, pid in zip(runs, pids, strict=True):
                run = await group.finished(run_id)
                assert run["status"] == "success", (run["status"], run["reason"])
                step = await group.db.step(run_id, "work")
                assert (step["attempt"], step["external_id"]) == (1, str(pid))
            assert sorted(lines(marker)) == sorted(str(r) for r in runs)  # each ran once
        finally:
            for pid in pids:
                kill_group(pid)


@pytest.mark.parametrize("count", [2])
async def test_kill_9_during_a_local_step_fails_it_interrupted_at_a_survivor(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack, count: int
) -> None:
    marker = tmp_path / "work.marker"
    write_pipeline(pipelines_dir, "plain", counting("plain", marker, 120))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, count=count) as group:
        run_id = await group.create_run(0, "plain")
        pid = await running_pid(group, run_id)
        try:
            await group.kill9(0)
            killed = time.monotonic()
            run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT)
            took = time.monotonic() - killed
            assert run["status"] == "failed"
            step = await group.db.step(run_id, "work")
            assert step["status"] == "failed"
            assert "interrupted" in str(step["reason"]), step["reason"]
            assert (await group.db.step(run_id, "after"))["status"] == "skipped"
            body = await group.execution(count - 1, run_id)
            assert body["status"] == "failed"
            assert lines(marker) == [str(run_id)]  # not run again
            assert took <= TAKE_OVER_LIMIT
        finally:
            kill_group(pid)


@pytest.mark.parametrize("count", [3])
async def test_kill_9_during_a_retry_on_restart_step_runs_it_again_once_at_a_survivor(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack, count: int
) -> None:
    marker = tmp_path / "work.marker"
    write_pipeline(pipelines_dir, "lucky", second_time_lucky("lucky", marker))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, count=count) as group:
        run_id = await group.create_run(0, "lucky")
        pid = await running_pid(group, run_id)
        try:
            await group.kill9(0)
            run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT)
            assert run["status"] == "success", (run["status"], run["reason"])
            assert lines(marker) == ["run", "run"]  # the survivors ran it once more, not twice
            assert (await group.execution(1, run_id))["status"] == "success"
        finally:
            kill_group(pid)


async def test_restarting_one_replica_while_the_other_works(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "work.marker"
    lost = tmp_path / "lost.marker"
    write_pipeline(pipelines_dir, "work", counting("work", marker, 5))
    write_pipeline(pipelines_dir, "lost", counting("lost", lost, 120))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        doomed = await group.create_run(0, "lost")
        doomed_pid = await running_pid(group, doomed)
        working = [await group.create_run(1, "work") for _ in range(3)]
        pids = [await running_pid(group, run_id) for run_id in working]
        try:
            await group.restart(0)
            await group.restart(0)
            for run_id, pid in zip(working, pids, strict=True):
                run = await group.finished(run_id)
                assert run["status"] == "success", (run["status"], run["reason"])
                step = await group.db.step(run_id, "work")
                assert (step["attempt"], step["external_id"]) == (1, str(pid))
            assert sorted(lines(marker)) == sorted(str(r) for r in working)
            # The restarted replica's own earlier run was interrupted, not left running.
            run = await group.finished(doomed, timeout=TAKE_OVER_LIMIT)
            assert run["status"] == "failed"
            assert "interrupted" in str((await group.db.step(doomed, "work"))["reason"])
        finally:
            for pid in [*pids, doomed_pid]:
                kill_group(pid)


def long_gated(name: str, marker: Path, before: int, after: int) -> str:
    """Steps that each append their name to ``marker``, an approval gate among them:
    long enough that each replica keeps the run's step rows between drives."""

    def steps(prefix: str, count: int) -> str:
        return "".join(
            f"  - {{name: {prefix}{i}, run: \"echo {prefix}{i} >> '{marker}'\"}}\n"
            for i in range(count)
        )

    return (
        f"name: {name}\nsteps:\n{steps('before', before)}"
        f"  - name: gate\n    approval:\n      approvers: [{BOSS}]\n"
        f"{steps('after', after)}"
    )


BOSS = "UBOSS"


async def test_a_long_run_held_by_one_replica_goes_on_after_an_approval_at_the_other(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    """The replica that drives the run holds its step rows; the other writes the gate's
    end (and may start what follows): every step runs once, in order, to success."""
    marker = tmp_path / "steps.marker"
    write_pipeline(pipelines_dir, "long", long_gated("long", marker, before=4, after=6))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        run_id = await group.create_run(0, "long")
        await group.step_reaches(run_id, "gate", ["waiting_approval"])
        assert lines(marker) == [f"before{i}" for i in range(4)]

        status, body = await group.api(
            1, "POST", f"/api/v1/cicd/executions/{run_id}/approve/", user=BOSS
        )
        assert status == 200, (status, body)
        run = await group.finished(run_id)
        assert run["status"] == "success", (run["status"], run["reason"])
        steps = await group.db.steps(run_id)
        assert [s["status"] for s in steps] == ["success"] * 11
        assert lines(marker) == [f"before{i}" for i in range(4)] + [f"after{i}" for i in range(6)]


async def live_replicas(group: Replicas) -> int:
    """Replicas whose lease has not run out, by the database's clock."""
    return int(await group.db.value("SELECT count(*) FROM replica WHERE lease_until > now()"))


async def test_sigterm_lets_a_running_step_finish_then_exits_and_hands_over(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "work.marker"
    write_pipeline(pipelines_dir, "short", counting("short", marker, 3))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack) as group:
        run_id = await group.create_run(0, "short")
        pid = await running_pid(group, run_id)
        try:
            stopped = time.monotonic()
            code = await group.sigterm(0, timeout=30)
            assert code == 0, group.logs()
            assert time.monotonic() - stopped >= 2.0  # it waited for the step
            step = await group.db.step(run_id, "work")
            assert step["status"] == "success", (step["status"], step["reason"])
            assert await live_replicas(group) == 1  # its lease is released, not left to expire
            run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT)
            assert run["status"] == "success", (run["status"], run["reason"])
            assert lines(marker) == [str(run_id)]
        finally:
            kill_group(pid)


async def test_sigterm_with_a_short_drain_hands_the_step_over_as_if_the_replica_died(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "work.marker"
    write_pipeline(pipelines_dir, "lucky", second_time_lucky("lucky", marker))
    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, start=False) as group:
        await group.start(0, ANSFLOW_DRAIN_SECONDS="1")
        await group.start(1)
        run_id = await group.create_run(0, "lucky")
        pid = await running_pid(group, run_id)
        try:
            stopped = time.monotonic()
            code = await group.sigterm(0, timeout=20)
            assert code == 0, group.logs()
            assert time.monotonic() - stopped < 10
            run = await group.finished(run_id, timeout=TAKE_OVER_LIMIT)
            assert run["status"] == "success", (run["status"], run["reason"])
            assert lines(marker) == ["run", "run"]  # handed over and run again, once
        finally:
            kill_group(pid)


def gated(marker: Path) -> str:
    return f"""\
name: gated
steps:
  - name: gate
    run: for i in $(seq 1 600); do [ -f "{marker}" ] && exit 0; sleep 0.05; done; exit 1
  - name: after
    run: echo after
"""


async def receive_until_closed(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Any]:
    messages: list[Any] = []
    deadline = time.monotonic() + seconds
    while len(messages) < 100:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        messages.append(json.loads(message.data))
    return messages


async def test_a_websocket_at_one_replica_follows_a_run_driven_by_the_other(
    tmp_path: Path, pg_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    await websocket_follows_the_other_replica(tmp_path, pg_url, pipelines_dir, slack)


async def test_replicas_on_a_unix_socket_url_with_pool_options_still_signal_each_other(
    tmp_path: Path, pg_url: str, pg_server: ThrowawayPostgres, pipelines_dir: Path, slack: FakeSlack
) -> None:
    # PostgreSQL on the same host, through its socket folder; the pool's own option
    # (maxsize) must not reach the replicas' listening connection, nor lose its host.
    database = pg_url.rsplit("/", 1)[1]
    url = f"postgres://{pg_server.user}@:{pg_server.port}/{database}?host={pg_server.socket_dir}&maxsize=3"
    await websocket_follows_the_other_replica(tmp_path, url, pipelines_dir, slack)
    logs = (tmp_path / "replica-0.log").read_text() + (tmp_path / "replica-1.log").read_text()
    assert "lost the listening connection" not in logs


async def websocket_follows_the_other_replica(
    tmp_path: Path, database_url: str, pipelines_dir: Path, slack: FakeSlack
) -> None:
    marker = tmp_path / "go"
    write_pipeline(pipelines_dir, "gated", gated(marker))
    async with replica_set(tmp_path, database_url, pipelines_dir, slack) as group:
        run_id = await group.create_run(0, "gated")
        await running_pid(group, run_id, "gate")
        async with group.ws(1, f"/api/v1/ws/executions/{run_id}/") as ws:
            first = json.loads((await ws.receive(timeout=20)).data)
            assert first["type"] == "snapshot"
            assert first["execution"]["status"] == "running"
            marker.touch()
            events = await receive_until_closed(ws, 20)
        seen = [(e["type"], (e.get("step") or {}).get("name")) for e in events]
        assert seen == [
            ("step.finished", "gate"),
            ("step.started", "after"),
            ("step.finished", "after"),
            ("run.finished", None),
        ], seen
        assert events[-1]["status"] == "success"
        assert all(e["execution_id"] == run_id for e in events)
        await asyncio.wait_for(group.finished(run_id), 20)
