"""A real ``ansflow serve`` in a child process, for benchmarks that go through HTTP.

The server is the installed console script (``ansflow`` next to this
interpreter), listening on 127.0.0.1 on a free port, with a JWT secret and one
admin so the clients may start any pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

# ANSFLOW_BENCH_COMMAND: another ``ansflow`` to measure (e.g. a wrapper running an older checkout).
ANSFLOW = os.environ.get("ANSFLOW_BENCH_COMMAND") or str(Path(sys.executable).parent / "ansflow")
SECRET = "bench-secret-bench-secret-bench-secret!"
ADMIN = "UBENCH"
TWO_ECHOES = """\
name: quick
steps:
  - {name: one, run: "echo one"}
  - {name: two, run: "echo two"}
"""
DONE = frozenset({"success", "failed", "cancelled"})


def machine_note() -> str:
    """The load when the figures were taken: on a shared 2-core machine it decides them."""
    one, five, _ = os.getloadavg()
    return f"(load average {one:.1f} / {five:.1f}, {os.cpu_count()} CPUs)"


def machine_ticks() -> tuple[int, int] | None:
    """(busy, all) clock ticks of every CPU so far, from ``/proc/stat``; None where
    there is none. Two readings give how busy the whole machine was between them:
    a load that leaves it idle part of the time is waiting, not computing."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """ "; machine N % busy" between two :func:`machine_ticks` readings ("" if unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return ""
    return f"; machine {100 * (after[0] - before[0]) / (after[1] - before[1]):.0f} % busy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def bearer() -> dict[str, str]:
    from api.auth import create_token

    return {"Authorization": f"Bearer {create_token(SECRET, ADMIN, 3600)}"}


def write_pipelines(folder: Path, text: str = TWO_ECHOES) -> Path:
    pipelines = folder / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / "quick.yml").write_text(text)
    return pipelines


@dataclass
class Server:
    url: str
    process: asyncio.subprocess.Process

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (all its threads; not its steps'
        processes), from ``/proc``; None where there is none. On a shared machine
        this moves far less with the neighbours than the wall-clock figures do."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def serving(
    folder: Path, database_url: str, pipelines: Path, command: str = ANSFLOW
) -> AsyncIterator[Server]:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "ANSFLOW_DATABASE_URL": database_url,
        "ANSFLOW_PIPELINES_DIR": str(pipelines),
        "ANSFLOW_PORT": str(port),
        "ANSFLOW_JWT_SECRET": SECRET,
        "ANSFLOW_ADMINS": ADMIN,
    }
    log = (folder / f"serve-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        command, "serve", cwd=folder, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(url, process)
        yield Server(url, process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"ansflow serve exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError("ansflow serve did not become healthy within 60 s")


def other_build(argv: list[str]) -> str | None:
    """``COMMAND`` when the arguments are ``--vs COMMAND`` (another build to compare with)."""
    return argv[1] if len(argv) == 2 and argv[0] == "--vs" else None


async def on_sqlite_and_postgres(
    what: str, name: str, measure: Callable[[str, str, Path], Awaitable[object]]
) -> bool:
    """``measure(label, database_url, folder)`` on SQLite, then on a throwaway PostgreSQL.

    False, once it has said so, when there are no PostgreSQL programs.
    """

    async def on_one(label: str, urls: list[str], folder: Path) -> None:
        await measure(label, urls[0], folder)

    return await on_sqlite_and_postgres_databases(what, [name], on_one)


async def on_sqlite_and_postgres_databases(
    what: str, names: list[str], measure: Callable[[str, list[str], Path], Awaitable[object]]
) -> bool:
    """``measure(label, database_urls, folder)``, a database per name: SQLite files, then
    databases on one throwaway PostgreSQL (False, once said, without PostgreSQL programs)."""
    with tempfile.TemporaryDirectory() as folder:
        urls = [f"sqlite://{Path(folder) / name}.db" for name in names]
        await measure("SQLite", urls, Path(folder))
    with postgres_urls(*names) as pg, tempfile.TemporaryDirectory() as folder:
        if not pg:
            print(f"{what}, PostgreSQL: skipped (no PostgreSQL programs)", flush=True)
            return False
        await measure("PostgreSQL", pg, Path(folder))
    return True


@contextlib.contextmanager
def postgres_url(name: str) -> Iterator[str | None]:
    """A database on a throwaway PostgreSQL with production durability (fsync on)."""
    with postgres_urls(name) as urls:
        yield urls[0] if urls else None


@contextlib.contextmanager
def postgres_urls(*names: str) -> Iterator[list[str]]:
    """Databases on one throwaway PostgreSQL (fsync on); none without PostgreSQL programs."""
    from tests.pg_server import ThrowawayPostgres

    if not ThrowawayPostgres.available():
        yield []
        return
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    with ThrowawayPostgres(settings=durable) as pg:
        for name in names:
            pg.create_database(name)
        yield [pg.url(name) for name in names]


async def post_quick(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> dict[str, Any]:
    """POST one run of the ``quick`` pipeline; its execution as the API answered it."""
    async with http.post(
        f"{url}/api/v1/cicd/executions/",
        headers=headers,
        json={"pipeline": "quick", "trigger_type": "api"},
    ) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"POST answered {resp.status}: {body}")
    return body


async def count_runs(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], status: str
) -> int:
    """How many runs of the ``quick`` pipeline have ``status`` (one list request)."""
    async with http.get(
        f"{url}/api/v1/cicd/executions/",
        params={"pipeline": "quick", "status": status, "page_size": "1"},
        headers=headers,
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"list answered {resp.status}: {body}")
        return int(body["count"])
