"""``kill -9`` of a real ``ansflow serve`` at each phase of a run, then a new one on the same data.

Unlike test_jenkins_restart.py (tasks cancelled in-process), the server here
is the console script in its own process and dies by SIGKILL: no cleanup
runs, sockets drop mid-request, SQLite is left with its WAL. FakeJenkins and
FakeSlack run in the test process; the database is read from the test.

Jenkins (ARCHITECTURE.md decisions 5, 15, 16): whatever the phase of the
step when the process died, the next process triggers no second build,
follows the one Jenkins has, and the shell step after it runs exactly once.

Slack (decision 4): messages piled up in the outbox, or one in flight when
the process died, reach Slack exactly once after the restart, in the same
thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web

from engine.state import RUN_TERMINAL
from storage.db import close_db, open_db
from storage.models import OutboxMessage, Run, StepRun
from tests.api_support import ADMIN, SECRET, bearer
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, write_pipeline
from tests.jenkins_e2e import DEPLOY_PARAMS, TOKEN, USER, triggers, write_jenkins_pipeline
from tests.pg_server import ThrowawayPostgres
from tests.slack_signing import CHANNEL, command_body, run_of, signed_headers, slack_env
from tests.test_serve import free_port

ANSFLOW = str(Path(sys.executable).parent / "ansflow")
MARKED_PARAMS = [*DEPLOY_PARAMS, ("ANSFLOW_RUN_STEP", "string", "")]
START_TIMEOUT = 30.0
Json = dict[str, Any]


# -- the server as a process --------------------------------------------------------


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    log: Path


@dataclass
class Servers:
    """Starts ``ansflow serve`` processes; kills whatever is left at the end."""

    tmp_path: Path
    env: dict[str, str]
    http: aiohttp.ClientSession
    started: list[Served] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    async def start(self) -> Served:
        port = free_port()
        log = self.tmp_path / f"serve-{len(self.started) + 1}.log"
        out = log.open("wb")
        self._logs.append(out)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.tmp_path),
            "LANG": "C.UTF-8",
            "ANSFLOW_HOST": "127.0.0.1",
            "ANSFLOW_PORT": str(port),
            # Each start listens on a new port: the killed one is known dead by its lease.
            "ANSFLOW_LEASE_SECONDS": "2",
            **self.env,
        }
        process = await asyncio.create_subprocess_exec(
            ANSFLOW,
            "serve",
            cwd=self.tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        served = Served(process, f"http://127.0.0.1:{port}", log)
        self.started.append(served)

        async def health() -> int:
            if process.returncode is not None:
                raise AssertionError(f"ansflow serve exited {process.returncode}:\n{logs(served)}")
            try:
                async with self.http.get(f"{served.url}/healthz") as reply:
                    return reply.status
            except aiohttp.ClientError:
                return 0

        await eventually(health, lambda status: status == 200, timeout=START_TIMEOUT, interval=0.05)
        return served

    async def kill9(self, served: Served) -> None:
        """SIGKILL: nothing of the process's own shutdown runs."""
        assert served.process.returncode is None, logs(served)
        served.process.send_signal(signal.SIGKILL)
        code = await asyncio.wait_for(served.process.wait(), timeout=10)
        assert code == -signal.SIGKILL

    async def close(self) -> None:
        for served in self.started:
            if served.process.returncode is None:
                served.process.kill()
                with suppress(TimeoutError):
                    await asyncio.wait_for(served.process.wait(), timeout=10)
        for out in self._logs:
            out.close()


def logs(*served: Served) -> str:
    return "\n".join(
        f"--- {s.log.name} ---\n{s.log.read_text(errors='replace')[-6000:]}" for s in served
    )


@asynccontextmanager
async def servers(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Servers]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        group = Servers(tmp_path, env, http)
        try:
            yield group
        finally:
            await group.close()


@asynccontextmanager
async def database(url: str) -> AsyncIterator[None]:
    """The servers' database, read from the test (already migrated by the first server)."""
    await open_db(url, apply_migrations=False)
    try:
        yield
    finally:
        await close_db()


async def start_api_run(group: Servers, served: Served, pipeline: str) -> int:
    async with group.http.post(
        f"{served.url}/api/v1/cicd/executions/", json={"pipeline": pipeline}, headers=bearer(ADMIN)
    ) as reply:
        body = await reply.json()
        assert reply.status == 201, body
        return int(body["id"])


async def finished_run(group: Servers, served: Served, run_id: int, timeout: float = 30) -> Json:
    """The run as the API shows it once it has ended."""

    async def probe() -> Json:
        async with group.http.get(
            f"{served.url}/api/v1/cicd/executions/{run_id}/", headers=bearer(ADMIN)
        ) as reply:
            body: Json = await reply.json()
            return body

    terminal = {status.value for status in RUN_TERMINAL}
    try:
        return await eventually(probe, lambda b: b.get("status") in terminal, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(*group.started)}") from None


async def jenkins_step(run_id: int) -> StepRun:
    step = await StepRun.filter(run_id=run_id, kind="jenkins").first()
    assert step is not None
    return step


async def phase_reached(run_id: int, phase: str, timeout: float = 15) -> StepRun:
    def ready(step: StepRun) -> bool:
        return step.status == "running" and (step.external_state or {}).get("phase") == phase

    return await eventually(lambda: jenkins_step(run_id), ready, timeout=timeout)


async def seen(count: Callable[[], int], at_least: int) -> None:
    """Wait until a count of the fake's requests reaches ``at_least``."""

    async def probe() -> int:
        return count()

    await eventually(probe, lambda n: n >= at_least, timeout=15)


# -- Jenkins ----------------------------------------------------------------------------


class LateAnswers(FakeJenkins):
    """Jenkins that carries out a trigger at once but answers it only after ``answer_delay``.

    The process that sent the POST can die in between: Jenkins has queued the
    build, the service never learnt its queue item.
    """

    answer_delay = 0.0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)  # the queue item exists from here on
        if self.answer_delay and request.method == "POST" and "/build" in request.path:
            await asyncio.sleep(self.answer_delay)
        return response


@pytest.fixture
async def jenkins() -> AsyncIterator[LateAnswers]:
    fake = LateAnswers(user=USER, token=TOKEN)
    await fake.start()
    try:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("marked", params=MARKED_PARAMS)
        yield fake
    finally:
        await fake.stop()


def jenkins_env(database_url: str, pipelines_dir: Path, fake: FakeJenkins) -> dict[str, str]:
    return {
        "ANSFLOW_DATABASE_URL": database_url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        "ANSFLOW_JWT_SECRET": SECRET,
        "ANSFLOW_ADMINS": ADMIN,
        "JENKINS_URL": fake.url,
        "JENKINS_USER": USER,
        "JENKINS_API_TOKEN": TOKEN,
        "ANSFLOW_POLL_INTERVAL": "0.2",
    }


def pipeline_with_after(pipelines_dir: Path, marker: Path, job: str) -> None:
    after = f"  - name: After\n    run: \"echo ran >> '{marker}'\"\n"
    write_jenkins_pipeline(pipelines_dir, job=job, extra_steps=after)


def build_count(fake: FakeJenkins, job: str) -> int:
    """Builds Jenkins holds for ``job``: waiting in the queue or started."""
    with fake.state.lock:
        fake.state.advance()
        started = len(fake.state.job(job).builds)
        waiting = sum(1 for item in fake.state.queue.values() if item.job == job and item.waiting)
    return started + waiting


def polls(fake: FakeJenkins, path: str) -> Callable[[], int]:
    return lambda: fake.count(path, "GET")


async def assert_one_build_and_success(
    group: Servers, served: Served, fake: FakeJenkins, run_id: int, job: str, marker: Path
) -> None:
    run = await finished_run(group, served, run_id)
    assert run["status"] == "success", (run, logs(*group.started))
    jenkins_json, after = run["steps"]
    assert jenkins_json["status"] == "success"
    assert jenkins_json["external_url"] == f"{fake.url}job/{job}/1/"
    assert after["status"] == "success"
    assert triggers(fake, job) == 1
    assert build_count(fake, job) == 1
    assert marker.read_text() == "ran\n"


async def crash_while_queued(
    group: Servers, first: Served, fake: LateAnswers, run_id: int, job: str
) -> Served:
    await phase_reached(run_id, "queued")
    await group.kill9(first)
    second = await group.start()
    # The new process asks Jenkins about the waiting item before it may leave the queue.
    await seen(polls(fake, "/queue/api/json"), fake.count("/queue/api/json", "GET") + 1)
    fake.release_queue(job)
    return second


async def crash_while_building(
    group: Servers, first: Served, fake: LateAnswers, run_id: int, job: str
) -> Served:
    await phase_reached(run_id, "building")
    await group.kill9(first)
    second = await group.start()
    await seen(polls(fake, "/computer/api/json"), fake.count("/computer/api/json", "GET") + 1)
    step = await jenkins_step(run_id)
    assert step.status == "running"
    fake.release(job, "SUCCESS")
    return second


async def crash_after_the_build_ended_unseen(
    group: Servers, first: Served, fake: LateAnswers, run_id: int, job: str
) -> Served:
    await phase_reached(run_id, "building")
    # From the release on, every answer to the dying process is held back: it cannot learn
    # that the build ended before it is killed.
    fake.slow(60)
    fake.release(job, "SUCCESS")
    await group.kill9(first)
    assert fake.build(job, 1).result == "SUCCESS"
    step = await jenkins_step(run_id)
    assert step.status == "running" and (step.external_state or {}).get("phase") == "building"
    fake.slow(0)
    return await group.start()


async def crash_after_the_post_reached_jenkins(
    group: Servers, first: Served, fake: LateAnswers, run_id: int, job: str
) -> Served:
    # answer_delay was set before the run started: the POST takes effect, its answer waits.
    await seen(lambda: triggers(fake, job), 1)
    assert build_count(fake, job) == 1  # Jenkins has it
    await group.kill9(first)
    step = await jenkins_step(run_id)
    state = step.external_state or {}
    assert step.status == "running" and state.get("phase") == "triggering", state
    assert state.get("bound") == 1 and step.external_id is None
    fake.answer_delay = 0.0
    queue_looks = fake.count("/queue/api/json", "GET")
    second = await group.start()
    await seen(polls(fake, "/queue/api/json"), queue_looks + 1)  # it looked first
    return second


PHASES = {
    "queued": crash_while_queued,
    "building": crash_while_building,
    "ended-unseen": crash_after_the_build_ended_unseen,
    "post-unanswered": crash_after_the_post_reached_jenkins,
}
CASES = [
    pytest.param("queued", "deploy-web", "sqlite", id="queued-sqlite"),
    pytest.param(
        "queued", "deploy-web", "postgres", id="queued-postgres", marks=pytest.mark.postgres
    ),
    pytest.param("building", "deploy-web", "sqlite", id="building-sqlite"),
    pytest.param("ended-unseen", "deploy-web", "sqlite", id="ended-unseen-sqlite"),
    pytest.param("post-unanswered", "deploy-web", "sqlite", id="post-unanswered-params-sqlite"),
    pytest.param(
        "post-unanswered",
        "marked",
        "postgres",
        id="post-unanswered-marker-postgres",
        marks=pytest.mark.postgres,
    ),
]


@pytest.fixture
async def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL: "sqlite" (a file) or "postgres" (a fresh database), by parameter."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ansflow.db'}"
        return
    server: ThrowawayPostgres = request.getfixturevalue("pg_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await server.acreate_database(name)
    yield url
    await server.adrop_database(name)


@pytest.mark.parametrize(("phase", "job", "crash_db"), CASES, indirect=["crash_db"])
async def test_kill_9_at_each_jenkins_phase_triggers_one_build_and_the_run_goes_on(
    tmp_path: Path,
    pipelines_dir: Path,
    jenkins: LateAnswers,
    phase: str,
    job: str,
    crash_db: str,
) -> None:
    url = crash_db
    marker = tmp_path / "after.marker"
    pipeline_with_after(pipelines_dir, marker, job)
    if phase == "queued":
        jenkins.hold_queue(job)
    if phase in ("building", "ended-unseen"):
        jenkins.hold(job)
    if phase == "post-unanswered":
        jenkins.answer_delay = 60.0
    async with servers(tmp_path, jenkins_env(url, pipelines_dir, jenkins)) as group:
        first = await group.start()
        async with database(url):
            run_id = await start_api_run(group, first, "deploy")
            second = await PHASES[phase](group, first, jenkins, run_id, job)
            await assert_one_build_and_success(group, second, jenkins, run_id, job, marker)
            if job == "marked":
                step = await jenkins_step(run_id)
                assert jenkins.build(job, 1).params["ANSFLOW_RUN_STEP"] == f"{run_id}-{step.id}-1"


# -- Slack outbox -------------------------------------------------------------------------

NOTIFY = """\
name: notify-svc
steps:
  - name: Build
    run: echo built
"""


async def slash_run(group: Servers, served: Served, pipeline: str) -> None:
    body = command_body(f"run {pipeline}")
    async with group.http.post(
        f"{served.url}/slack/events", data=body, headers=signed_headers(body)
    ) as reply:
        assert reply.status == 200, await reply.text()


async def runs_finished(count: int) -> list[Run]:
    async def probe() -> list[Run]:
        return await Run.filter(status="success").order_by("id")

    return await eventually(probe, lambda runs: len(runs) == count, timeout=20)


def posted_per_row(fake: FakeSlack) -> Counter[int]:
    """How many times Slack accepted a post of each outbox row (metadata names the row)."""
    rows: Counter[int] = Counter()
    for call in fake.calls_for("chat.postMessage"):
        if call.ok:
            rows[int(call.args["metadata"]["event_payload"]["row"])] += 1
    return rows


async def all_delivered_once(group: Servers, fake: FakeSlack, runs: list[Run]) -> None:
    async def completions() -> int:
        return sum(1 for m in fake.messages(CHANNEL) if m.reply_broadcast)

    async def pending() -> int:
        return await OutboxMessage.filter(state="pending").count()

    try:
        await eventually(completions, lambda n: n >= len(runs), timeout=40, interval=0.1)
        await eventually(pending, lambda n: n == 0, timeout=20, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(*group.started)}") from None
    assert await OutboxMessage.filter(state="dead").count() == 0
    messages = fake.messages(CHANNEL)
    roots = Counter(run_of(m) for m in messages if not m.is_reply)
    ends = Counter(run_of(m) for m in messages if m.reply_broadcast)
    wanted = {run.id: 1 for run in runs}
    assert dict(roots) == wanted, roots
    assert dict(ends) == wanted, ends
    assert all(n == 1 for n in posted_per_row(fake).values()), posted_per_row(fake)
    posts = await OutboxMessage.filter(kind__in=["root_post", "reply"]).count()
    assert len(posted_per_row(fake)) == posts
    for run in runs:
        fresh = await Run.get(id=run.id)
        root = next(m for m in messages if not m.is_reply and run_of(m) == run.id)
        assert fresh.thread_ts == root.ts
        replies = [m for m in messages if m.is_reply and run_of(m) == run.id]
        assert replies and all(m.thread_ts == root.ts for m in replies)
        assert "succeeded" in root.text


async def wait_calls(fake: FakeSlack, method: str, count: int) -> None:
    async def probe() -> int:
        return len(fake.calls_for(method))

    await eventually(probe, lambda n: n >= count, timeout=20)


@pytest.mark.parametrize("outage", ["root-in-flight", "reply-in-flight", "slack-down"])
async def test_kill_9_with_slack_messages_piled_up_delivers_each_once_in_its_thread(
    tmp_path: Path, pipelines_dir: Path, outage: str
) -> None:
    url = f"sqlite://{tmp_path / 'ansflow.db'}"
    write_pipeline(pipelines_dir, "notify-svc", NOTIFY)
    async with FakeSlack() as fake:
        env = {
            "ANSFLOW_DATABASE_URL": url,
            "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
            **slack_env(fake),
        }
        async with servers(tmp_path, env) as group:
            first = await group.start()
            async with database(url):
                if outage == "root-in-flight":
                    # Slack stores each post at once and answers late: the first root is
                    # on Slack when the process dies, but the process never learnt it.
                    fake.delay(60.0, method="chat.postMessage")
                elif outage == "slack-down":
                    fake.go_down()
                else:
                    await slash_run(group, first, "notify-svc")

                    async def threaded() -> int:
                        return await Run.filter(thread_ts__isnull=False).count()

                    await eventually(threaded, lambda n: n == 1)
                    # From now on posts reach Slack but their answers do not come back.
                    fake.delay(60.0, method="chat.postMessage")
                    before = len(fake.calls_for("chat.postMessage"))
                    await wait_calls(fake, "chat.postMessage", before + 1)
                    assert fake.calls_for("chat.postMessage")[before].args.get("thread_ts")
                await slash_run(group, first, "notify-svc")
                await slash_run(group, first, "notify-svc")
                runs = await runs_finished(3 if outage == "reply-in-flight" else 2)
                if outage != "reply-in-flight":
                    await wait_calls(fake, "chat.postMessage", 1)  # in flight, or refused (503)
                if outage == "slack-down":
                    assert fake.messages(CHANNEL) == []
                pending = await OutboxMessage.filter(state="pending").count()
                await group.kill9(first)
                assert pending > 0
                in_flight = await OutboxMessage.filter(state="pending", last_error="in flight")
                if outage != "slack-down":
                    assert len(in_flight) == 1
                    assert posted_per_row(fake)[in_flight[0].id] == 1  # Slack has it already
                fake.delay(0.0, method="chat.postMessage")
                fake.come_up()
                await group.start()
                await all_delivered_once(group, fake, runs)
                if outage == "root-in-flight":
                    assert fake.calls_for("conversations.history")
                if outage == "reply-in-flight":
                    assert fake.calls_for("conversations.replies")
