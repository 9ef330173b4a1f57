"""Several real ``ansflow serve`` processes on one PostgreSQL database, with the fakes.

Each replica is the console script of this venv in its own process (and
session), on its own 127.0.0.1 port, with the same settings: the JWT secret,
the Slack token and signing secret with ``SLACK_API_URL`` at a
:class:`~tests.fakes.slack.FakeSlack`, ``JENKINS_*`` at a
:class:`~tests.fakes.jenkins.FakeJenkins` (when given), a short lease and
poll interval. The fakes are real servers on 127.0.0.1 in the test process.

    async with replica_set(tmp_path, pg_url, pipelines_dir, slack, count=2) as group:
        await group.command(0, "run build")          # signed slash command at replica 0
        await group.kill9(0)
        run = await group.finished(run_id, at=1)     # REST at replica 1

The database is read from the test with plain asyncpg (:class:`Db`), so the
test keeps working while replicas die or the server stops. Every wait is a
bounded poll; on failure the replicas' logs are printed (pytest shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import asyncpg

from storage.db import connect_options
from tests.api_support import ADMIN, bearer
from tests.api_support import SECRET as JWT_SECRET
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import eventually
from tests.jenkins_e2e import TOKEN as JENKINS_TOKEN
from tests.jenkins_e2e import USER as JENKINS_USER
from tests.slack_signing import (
    ALICE,
    CHANNEL,
    click_body,
    command_body,
    run_of,
    signed_headers,
    slack_env,
)
from tests.test_serve import free_port

ANSFLOW = str(Path(sys.executable).parent / "ansflow")
START_TIMEOUT = 45.0
LEASE_SECONDS = 2.0
POLL_INTERVAL = 0.2
TERMINAL = frozenset({"success", "failed", "cancelled"})
EXECUTIONS = "/api/v1/cicd/executions/"
Json = dict[str, Any]
T = TypeVar("T")


# -- the database, read from the test ---------------------------------------------------


class Db:
    """asyncpg on the replicas' database; reconnects after an outage."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        for attempt in range(2):
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(**connect_options(self.url), timeout=5)
                return list(await self._conn.fetch(sql, *args, timeout=10))
            except (
                OSError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.exceptions.OperatorInterventionError,
            ):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def value(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def run(self, run_id: int) -> asyncpg.Record | None:
        rows = await self.fetch("SELECT * FROM run WHERE id = $1", run_id)
        return rows[0] if rows else None

    async def steps(self, run_id: int) -> list[asyncpg.Record]:
        return await self.fetch("SELECT * FROM step_run WHERE run_id = $1 ORDER BY path", run_id)

    async def step(self, run_id: int, name: str) -> asyncpg.Record:
        rows = await self.fetch(
            "SELECT * FROM step_run WHERE run_id = $1 AND name = $2", run_id, name
        )
        assert rows, f"run {run_id} has no step {name!r}"
        return rows[0]

    async def run_ids(self) -> list[int]:
        return [int(r["id"]) for r in await self.fetch("SELECT id FROM run ORDER BY id")]

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None


# -- replicas ---------------------------------------------------------------------------------


@dataclass
class Replica:
    index: int
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None
    incarnation: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Replicas:
    tmp_path: Path
    env: dict[str, str]
    http: aiohttp.ClientSession
    db: Db
    slack: FakeSlack
    jenkins: FakeJenkins | None = None
    replicas: list[Replica] = field(default_factory=list)
    _outs: list[IO[bytes]] = field(default_factory=list)

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def add(self) -> Replica:
        index = len(self.replicas)
        replica = Replica(index, free_port(), self.tmp_path / f"replica-{index}.log")
        self.replicas.append(replica)
        return replica

    # ---- lifecycle -------------------------------------------------------------

    async def launch(self, index: int, **env: str) -> Replica:
        """Start the process of replica ``index`` without waiting for it to be healthy."""
        replica = self.replicas[index]
        assert not replica.alive, f"replica {index} is already running"
        replica.incarnation += 1
        out = replica.log.open("ab")
        out.write(f"\n===== replica {index} start #{replica.incarnation} =====\n".encode())
        out.flush()
        self._outs.append(out)
        full_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.tmp_path),
            "LANG": "C.UTF-8",
            "ANSFLOW_HOST": "127.0.0.1",
            "ANSFLOW_PORT": str(replica.port),
            **self.env,
            **env,
        }
        replica.process = await asyncio.create_subprocess_exec(
            ANSFLOW,
            "serve",
            cwd=self.tmp_path,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        return replica

    async def start(self, index: int, **env: str) -> Replica:
        """Start replica ``index`` and wait until its ``/healthz`` answers 200."""
        replica = await self.launch(index, **env)
        await self.healthy(index)
        return replica

    async def healthy(self, index: int, timeout: float = START_TIMEOUT) -> None:
        replica = self.replicas[index]

        async def health() -> int:
            if not replica.alive:
                code = replica.process.returncode if replica.process else None
                raise AssertionError(f"replica {index} exited {code}\n{self.logs()}")
            return await self.health(index)

        try:
            await eventually(health, lambda status: status == 200, timeout=timeout, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"replica {index} never healthy: {exc}\n{self.logs()}") from None

    async def health(self, index: int) -> int:
        """The status ``/healthz`` answers now (0 when nothing listens)."""
        try:
            async with self.http.get(
                f"{self.replicas[index].url}/healthz", timeout=aiohttp.ClientTimeout(total=5)
            ) as reply:
                return reply.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def kill9(self, index: int) -> None:
        """SIGKILL of the service process only: none of its shutdown runs.

        Its steps' process groups (own sessions) outlive it, as on a real host.
        """
        replica = self.replicas[index]
        assert replica.alive and replica.process is not None, f"replica {index} is not running"
        replica.process.send_signal(signal.SIGKILL)
        code = await asyncio.wait_for(replica.process.wait(), timeout=10)
        assert code == -signal.SIGKILL

    async def sigterm(self, index: int, timeout: float = 60.0) -> int:
        """SIGTERM; returns the exit code once the process has ended (bounded)."""
        replica = self.replicas[index]
        assert replica.alive and replica.process is not None, f"replica {index} is not running"
        replica.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(replica.process.wait(), timeout=timeout)
        except TimeoutError:
            raise AssertionError(
                f"replica {index} still running {timeout}s after SIGTERM\n{self.logs()}"
            ) from None

    async def restart(self, index: int, **env: str) -> Replica:
        """kill -9 (if running) then start again on the same port."""
        if self.replicas[index].alive:
            await self.kill9(index)
        return await self.start(index, **env)

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.alive and replica.process is not None:
                replica.process.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replica.process.wait(), timeout=10)
        for out in self._outs:
            out.close()

    def logs(self, chars: int = 8000) -> str:
        parts = []
        for replica in self.replicas:
            try:
                text = replica.log.read_text(errors="replace")
            except OSError:
                text = ""
            parts.append(f"--- {replica.log.name} (last {chars} chars) ---\n{text[-chars:]}")
        return "\n".join(parts)

    # ---- Slack --------------------------------------------------------------------

    async def slack_post(self, index: int, body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(
            f"{self.replicas[index].url}/slack/events", data=body, headers=headers
        ) as reply:
            return reply.status, await reply.text()

    async def command(
        self, index: int, text: str, user: str = ALICE, channel: str = CHANNEL
    ) -> tuple[int, str]:
        """A signed ``/ansflow`` slash command delivered to replica ``index``."""
        body = command_body(text, user, channel)
        return await self.slack_post(index, body, signed_headers(body))

    async def click(
        self, index: int, message: StoredMessage, action_id: str, user: str
    ) -> tuple[int, str]:
        """A signed click on a button of ``message`` delivered to replica ``index``."""
        body = click_body(message, action_id, user)
        return await self.slack_post(index, body, signed_headers(body))

    # ---- REST and WebSocket -----------------------------------------------------------

    async def api(
        self,
        index: int,
        method: str,
        path: str,
        user: str = ADMIN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        sent = {**bearer(user), **(headers or {})}
        async with self.http.request(
            method, self.replicas[index].url + path, headers=sent, **kwargs
        ) as reply:
            body: Any = await reply.text()
            if reply.content_type == "application/json":
                body = await reply.json()
            return reply.status, body

    async def create_run(self, index: int, pipeline: str, **params: str) -> int:
        status, body = await self.api(
            index, "POST", EXECUTIONS, json={"pipeline": pipeline, "parameters": params}
        )
        assert status == 201, (status, body)
        return int(body["id"])

    async def execution(self, index: int, run_id: int) -> Json:
        status, body = await self.api(index, "GET", f"{EXECUTIONS}{run_id}/")
        assert status == 200, (status, body)
        assert isinstance(body, dict)
        return body

    def ws(self, index: int, path: str) -> Any:
        """``async with group.ws(i, "/api/v1/ws/executions/7/") as ws:``"""
        return self.http.ws_connect(self.replicas[index].url + path, headers=bearer(ADMIN))

    # ---- waiting ---------------------------------------------------------------------------

    async def until(
        self,
        probe: Callable[[], Awaitable[T]],
        ready: Callable[[T], bool] = bool,
        timeout: float = 20.0,
        interval: float = 0.05,
        what: str = "",
    ) -> T:
        """:func:`tests.helpers.eventually` that shows the replicas' logs when it gives up."""
        try:
            return await eventually(probe, ready, timeout=timeout, interval=interval)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}\n{self.logs()}") from None

    async def run_status(self, run_id: int) -> str | None:
        row = await self.db.run(run_id)
        return None if row is None else str(row["status"])

    async def finished(self, run_id: int, timeout: float = 30.0) -> asyncpg.Record:
        """The run's row once it has ended (from the database)."""

        async def probe() -> tuple[str | None, str | None]:
            row = await self.db.run(run_id)
            return (None, None) if row is None else (row["status"], row["reason"])

        await self.until(
            probe, lambda r: r[0] in TERMINAL, timeout=timeout, what=f"run {run_id} to end"
        )
        row = await self.db.run(run_id)
        assert row is not None
        return row

    async def step_reaches(
        self, run_id: int, name: str, statuses: Iterable[str], timeout: float = 20.0
    ) -> asyncpg.Record:
        wanted = set(statuses)

        async def probe() -> str | None:
            rows = await self.db.fetch(
                "SELECT status FROM step_run WHERE run_id = $1 AND name = $2", run_id, name
            )
            return str(rows[0]["status"]) if rows else None

        await self.until(
            probe,
            lambda status: status in wanted,
            timeout=timeout,
            what=f"step {name!r} of run {run_id} to be {sorted(wanted)}",
        )
        return await self.db.step(run_id, name)

    async def new_runs(self, count: int, timeout: float = 20.0) -> list[int]:
        """Wait until the database holds at least ``count`` runs; their ids."""
        return await self.until(
            self.db.run_ids, lambda ids: len(ids) >= count, timeout=timeout, what="runs"
        )

    async def outbox_drained(self, timeout: float = 60.0) -> None:
        async def pending() -> int:
            return int(
                await self.db.value("SELECT count(*) FROM outbox_message WHERE state = 'pending'")
            )

        await self.until(pending, lambda n: n == 0, timeout=timeout, interval=0.1, what="outbox")


@asynccontextmanager
async def replica_set(
    tmp_path: Path,
    database_url: str,
    pipelines_dir: Path,
    slack: FakeSlack,
    *,
    count: int = 2,
    jenkins: FakeJenkins | None = None,
    start: bool = True,
    **env: str,
) -> AsyncIterator[Replicas]:
    """``count`` replicas: the first, then the others at once (none with ``start=False``)."""
    settings = {
        "ANSFLOW_DATABASE_URL": database_url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines_dir),
        "ANSFLOW_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "ANSFLOW_JWT_SECRET": JWT_SECRET,
        "ANSFLOW_ADMINS": ADMIN,
        "ANSFLOW_LEASE_SECONDS": f"{LEASE_SECONDS:g}",
        "ANSFLOW_POLL_INTERVAL": f"{POLL_INTERVAL:g}",
        **slack_env(slack),
    }
    if jenkins is not None:
        settings.update(
            JENKINS_URL=jenkins.url, JENKINS_USER=JENKINS_USER, JENKINS_API_TOKEN=JENKINS_TOKEN
        )
    settings.update(env)
    db = Db(database_url)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        group = Replicas(tmp_path, settings, http, db, slack, jenkins)
        try:
            for _ in range(count):
                group.add()
            if start and count:
                await group.start(0)  # migrates the database
                await asyncio.gather(*(group.start(index) for index in range(1, count)))
            yield group
        except BaseException:
            print(group.logs(20000))
            raise
        finally:
            await group.close()
            await db.close()


# -- what the fakes saw -------------------------------------------------------------------------


def posts_per_row(fake: FakeSlack) -> Counter[int]:
    """How many times Slack accepted a post of each outbox row (its metadata names the row)."""
    rows: Counter[int] = Counter()
    for call in fake.calls_for("chat.postMessage"):
        if call.ok and isinstance(call.args.get("metadata"), dict):
            rows[int(call.args["metadata"]["event_payload"]["row"])] += 1
    return rows


def peak_per_channel(fake: FakeSlack, window: float = 10.0) -> dict[str, int]:
    """Most accepted chat.postMessage calls of each channel within any ``window`` seconds."""
    times: dict[str, list[float]] = defaultdict(list)
    for call in fake.calls_for("chat.postMessage"):
        if call.ok:
            times[str(call.args.get("channel"))].append(call.at)
    peaks: dict[str, int] = {}
    for channel, ats in times.items():
        ats.sort()
        best, first = 0, 0
        for last, at in enumerate(ats):
            while at - ats[first] >= window:
                first += 1
            best = max(best, last - first + 1)
        peaks[channel] = best
    return peaks


def roots_by_run(fake: FakeSlack, channel: str) -> dict[int | None, list[StoredMessage]]:
    found: dict[int | None, list[StoredMessage]] = defaultdict(list)
    for message in fake.messages(channel):
        if not message.is_reply:
            found[run_of(message)].append(message)
    return found


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


async def gone(pgid: int, timeout: float = 15.0) -> bool:
    """Wait (bounded) until no process of group ``pgid`` is left; False if some stay."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        await asyncio.sleep(0.05)
    return not group_alive(pgid)


def kill_group(pgid: int) -> None:
    """Clean-up of a step's process group a test left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
