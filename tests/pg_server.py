"""Start and stop a throwaway PostgreSQL server for tests (stdlib only).

Usage::

    with ThrowawayPostgres() as pg:
        pg.create_database("t1")
        url = pg.url("t1")  # postgres://postgres@127.0.0.1:PORT/t1

The server's data directory, unix socket and log live in a fresh temp dir
that is removed by :meth:`ThrowawayPostgres.stop`. It listens on 127.0.0.1 on
a free port only, with trust authentication for the ``postgres`` role and
durability switched off for speed.

PostgreSQL refuses to run as root: when the current user is root, ``initdb``
and ``pg_ctl`` are run as the ``postgres`` system user (via the ``user=``
argument of :mod:`subprocess`) and the temp dir is created under ``/tmp`` with
mode 0755 and handed to that user.

``python -m tests.pg_server`` starts one, prints its URL and waits for
Ctrl-C / SIGTERM.

Only the stdlib is needed; the ``a*`` coroutine helpers import asyncpg lazily.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any
from urllib.parse import quote

__all__ = ["PostgresStartError", "ThrowawayPostgres", "find_bindir"]

SUPERUSER = "postgres"
"""Role created by initdb; also the system user the server runs as under root."""

RUN_AS_USER = "postgres"

_REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")

_DEFAULT_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    # Less WAL work; nothing here needs replication or archiving.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "logging_collector": "off",
}

_LOG_TAIL_LINES = 40
# Unix socket paths are limited to 107 bytes ("/.s.PGSQL.NNNNN" is 15 more).
_MAX_SOCKET_DIR_LEN = 90


class PostgresStartError(RuntimeError):
    """The throwaway server could not be initialised or started."""


def find_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres/psql of one installation.

    Order: ``$ANSFLOW_PG_BINDIR``; the directory of ``initdb`` found on PATH
    (symlinks resolved, so psql comes from the same version and not Debian's
    ``pg_wrapper``); ``pg_config --bindir``; the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's layout, not on PATH by default).
    """
    candidates: list[Path] = []
    env_dir = os.environ.get("ANSFLOW_PG_BINDIR")
    if env_dir:
        candidates.append(Path(env_dir))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))

    def _major(path: str) -> int:
        name = Path(path).parent.name
        return int(name) if name.isdigit() else -1

    debian_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    candidates.extend(Path(p) for p in debian_dirs)
    for cand in candidates:
        if all(os.access(cand / prog, os.X_OK) for prog in _REQUIRED_PROGRAMS):
            return cand
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _clean_env() -> dict[str, str]:
    """Environment for child processes without PG* variables that could
    redirect them (PGHOST, PGDATA, PGOPTIONS, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


class ThrowawayPostgres:
    """A private PostgreSQL server in a temp dir, on 127.0.0.1 and a free port.

    :param settings: extra ``postgresql.conf`` settings (values are written
        verbatim, so quote strings: ``{"timezone": "'UTC'"}``); they override
        the fast defaults.
    :param start_timeout: seconds to wait for the server to accept
        connections (bounded at 30).
    :param bindir: directory of the PostgreSQL programs; found by
        :func:`find_bindir` when omitted.
    """

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 30.0,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._settings: dict[str, str] = dict(_DEFAULT_SETTINGS)
        if settings:
            self._settings.update(settings)
        self._start_timeout = min(max(start_timeout, 1.0), 30.0)
        self._bindir: Path | None = Path(bindir) if bindir is not None else None
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self._running = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ info

    @staticmethod
    def available() -> bool:
        """True when the PostgreSQL server programs (initdb etc.) are found."""
        return find_bindir() is not None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise RuntimeError("ThrowawayPostgres is not running")
        return self._port

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def tmpdir(self) -> Path:
        if self._tmpdir is None:
            raise RuntimeError("ThrowawayPostgres is not running")
        return self._tmpdir

    @property
    def data_dir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.tmpdir / "sock"

    @property
    def log_file(self) -> Path:
        return self.tmpdir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        """Tortoise-style URL: ``postgres://postgres@127.0.0.1:PORT/DBNAME``.

        ``dbname`` is inserted as is (Tortoise does not percent-decode it), so
        keep database names to plain identifiers.
        """
        return f"postgres://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/asyncpg-style DSN: ``postgresql://postgres@127.0.0.1:PORT/DBNAME``
        (``dbname`` percent-encoded)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Last ``lines`` lines of the server log ('' if there is none)."""
        if self._tmpdir is None:
            return ""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """initdb + start; returns once the server accepts connections.

        Raises :class:`PostgresStartError` (with the log's tail) on failure.
        Retries with another port if the chosen one was taken meanwhile.
        """
        with self._lock:
            if self._running:
                return
            bindir = self._bindir or find_bindir()
            if bindir is None:
                raise PostgresStartError(
                    "PostgreSQL server programs not found (initdb, pg_ctl, postgres, psql): "
                    "install Debian's postgresql-15 or set ANSFLOW_PG_BINDIR"
                )
            self._bindir = bindir
            try:
                self._make_tmpdir()
                self._initdb()
                last_error: PostgresStartError | None = None
                for _attempt in range(3):
                    self._port = _free_port()
                    self._write_settings(self._port)
                    try:
                        self._pg_ctl_start()
                    except PostgresStartError as exc:
                        last_error = exc
                        if "could not bind" in str(exc) or "already in use" in str(exc):
                            self._truncate_log()
                            continue
                        raise
                    break
                else:
                    assert last_error is not None
                    raise last_error
            except BaseException:
                self._kill_leftover()
                self._remove_tmpdir()
                self._port = None
                raise
            self._running = True
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``) and remove the temp dir.

        Safe to call more than once. Bounded: falls back to SIGKILL.
        """
        with self._lock:
            if self._tmpdir is None:
                return
            atexit.unregister(self.stop)
            try:
                if self._running:
                    with contextlib.suppress(OSError, subprocess.SubprocessError):
                        self._run_as_server_user(
                            [
                                self._prog("pg_ctl"),
                                "stop",
                                "-D",
                                str(self.data_dir),
                                "-m",
                                "immediate",
                                "-w",
                                "-t",
                                "10",
                            ],
                            timeout=15,
                        )
                    self._kill_leftover()
            finally:
                self._running = False
                self._port = None
                self._remove_tmpdir()

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data directory and port (see :meth:`resume`).

        ``mode`` is pg_ctl's shutdown mode: ``fast`` ends sessions cleanly,
        ``immediate`` is like a crash. Clients see the database go away.
        """
        with self._lock:
            if not self._running:
                return
            proc = self._run_as_server_user(
                [
                    self._prog("pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "20",
                ],
                timeout=30,
            )
            if proc.returncode != 0:
                self._kill_leftover()
            self._running = False

    def resume(self) -> None:
        """Start a server stopped by :meth:`halt` again, on the same port and data."""
        with self._lock:
            if self._running:
                return
            if self._tmpdir is None or self._port is None:
                raise RuntimeError("resume() needs a server stopped by halt()")
            self._pg_ctl_start()
            self._running = True

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ databases

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 60.0) -> str:
        """Run ``sql`` with psql (ON_ERROR_STOP) and return its stdout."""
        args = [
            self._prog("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-c",
            sql,
        ]
        env = _clean_env()
        env["PGCONNECT_TIMEOUT"] = "5"
        try:
            proc = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"psql timed out after {timeout}s: {sql}") from exc
        if proc.returncode != 0:
            raise RuntimeError(
                f"psql failed ({proc.returncode}) for {sql!r}: {proc.stderr.strip()}"
            )
        return proc.stdout

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE`` via psql; returns :meth:`url` for it."""
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS ... WITH (FORCE)`` via psql (ends open sessions)."""
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    async def acreate_database(self, name: str) -> str:
        """Like :meth:`create_database`, with asyncpg; returns :meth:`url`."""
        await self._aexecute(f"CREATE DATABASE {_quote_ident(name)}")
        return self.url(name)

    async def adrop_database(self, name: str) -> None:
        """Like :meth:`drop_database`, with asyncpg."""
        await self._aexecute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    async def _aexecute(self, sql: str) -> None:
        # Imported lazily (and untyped) so that this module stays stdlib-only.
        asyncpg: Any = importlib.import_module("asyncpg")
        conn = await asyncpg.connect(dsn=self.dsn("postgres"), timeout=10)
        try:
            await conn.execute(sql, timeout=60)
        finally:
            await conn.close(timeout=10)

    # -------------------------------------------------------------- helpers

    def _prog(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _make_tmpdir(self) -> None:
        if self._as_root():
            try:
                pw = pwd.getpwnam(RUN_AS_USER)
            except KeyError as exc:
                raise PostgresStartError(
                    f"running as root but there is no {RUN_AS_USER!r} system user to run "
                    "PostgreSQL as (the server refuses to run as root)"
                ) from exc
            # Under /tmp so that the postgres user can traverse every parent
            # (TMPDIR might point into /root).
            path = Path(tempfile.mkdtemp(prefix="ansflow-pg-", dir="/tmp"))
            path.chmod(0o755)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        else:
            base = tempfile.gettempdir()
            if len(base) > _MAX_SOCKET_DIR_LEN - 30:
                base = "/tmp"
            path = Path(tempfile.mkdtemp(prefix="ansflow-pg-", dir=base))
        self._tmpdir = path
        self.socket_dir.mkdir(mode=0o700)
        if self._as_root():
            os.chown(self.socket_dir, pw.pw_uid, pw.pw_gid)

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _truncate_log(self) -> None:
        try:
            with self.log_file.open("w"):
                pass
        except OSError:
            pass

    def _run_as_server_user(
        self, args: Sequence[str], timeout: float, stdout: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        # As root, drop to the postgres user like runuser would: the server
        # refuses to run with root privileges.
        as_root = self._as_root()
        env = _clean_env()
        if as_root:
            env["HOME"] = str(self.tmpdir)
            env["USER"] = env["LOGNAME"] = RUN_AS_USER
        return subprocess.run(
            list(args),
            cwd=self.tmpdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            user=RUN_AS_USER if as_root else None,
            group=RUN_AS_USER if as_root else None,
            extra_groups=[] if as_root else None,
        )

    def _initdb(self) -> None:
        args = [
            self._prog("initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        try:
            proc = self._run_as_server_user(args, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise PostgresStartError(f"initdb timed out after {exc.timeout}s") from exc
        if proc.returncode != 0:
            out = proc.stdout.decode(errors="replace") if proc.stdout else ""
            tail = "\n".join(out.splitlines()[-_LOG_TAIL_LINES:])
            raise PostgresStartError(f"initdb failed with exit code {proc.returncode}:\n{tail}")

    def _write_settings(self, port: int) -> None:
        settings = dict(self._settings)
        settings["port"] = str(port)
        settings["unix_socket_directories"] = "'" + str(self.socket_dir).replace("'", "''") + "'"
        lines = ["", "# --- ansflow throwaway settings (last one wins) ---"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(lines) + "\n")

    def _pg_ctl_start(self) -> None:
        assert self._port is not None
        deadline = time.monotonic() + self._start_timeout
        wait_s = max(1, int(self._start_timeout))
        args = [
            self._prog("pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(wait_s),
        ]
        # pg_ctl's own output goes to a file, not a pipe: the postmaster it
        # forks must not hold a pipe of ours open.
        with tempfile.TemporaryFile() as out:
            try:
                proc = self._run_as_server_user(args, timeout=wait_s + 10, stdout=out)
            except subprocess.TimeoutExpired:
                raise PostgresStartError(
                    f"pg_ctl start did not return within {wait_s + 10}s\n"
                    f"--- server log tail ({self.log_file}) ---\n{self.log_tail()}"
                ) from None
            out.seek(0)
            ctl_out = out.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise PostgresStartError(
                f"PostgreSQL did not start (pg_ctl exit {proc.returncode}): {ctl_out}\n"
                f"--- server log tail ({self.log_file}) ---\n{self.log_tail()}"
            )
        # pg_ctl -w saw the server 'ready'; confirm the TCP listener too.
        while True:
            try:
                with socket.create_connection((self.host, self._port), timeout=1):
                    return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise PostgresStartError(
                        f"PostgreSQL started but 127.0.0.1:{self._port} refuses connections "
                        f"({exc})\n--- server log tail ({self.log_file}) ---\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        if self._tmpdir is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _kill_leftover(self) -> None:
        """SIGKILL the postmaster if it is still around (bounded wait)."""
        pid = self._postmaster_pid()
        if pid is None or pid <= 0:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.pg_server",
        description="Start a throwaway PostgreSQL, print its URL, wait for Ctrl-C/SIGTERM.",
    )
    parser.add_argument(
        "--dbname",
        default="postgres",
        help="database to create (unless 'postgres') and print the URL of",
    )
    opts = parser.parse_args(argv)

    stop_event = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    t0 = time.monotonic()
    try:
        with ThrowawayPostgres() as pg:
            if opts.dbname != "postgres":
                pg.create_database(opts.dbname)
            print(pg.url(opts.dbname), flush=True)
            print(
                f"# started in {time.monotonic() - t0:.2f}s; data in {pg.tmpdir}; "
                f"psql -h 127.0.0.1 -p {pg.port} -U postgres {opts.dbname}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop_event.wait(1.0):
                pass
    except PostgresStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
