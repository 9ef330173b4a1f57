"""Starting a step's ``/bin/sh -c`` in a session of its own, without stalling the loop.

Forking holds the calling thread until the child has exec'd: half a
millisecond on a quiet machine, several on a busy one, and the whole event
loop waits with it. The fork releases the GIL, so it happens in a worker
thread; the output pipe joins the loop, and the exit is seen through a pidfd,
then reaped. The hand-off to the thread and back costs about as much again,
so a step that starts alone (``on_loop``: nothing else starting or running
here) forks on the loop's thread instead: that is a lone run's latency, and
with nothing else running the loop has little else to do meanwhile.
Where pidfds are missing (not Linux, or an old kernel) asyncio's own
subprocess support does it in the loop, as before.

Either way, a step ends when its process exits, not when its output pipe
closes (a background child may hold that open): ``exited`` is set on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

READ_CHUNK = 65536


class StepProcess(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class _ThreadStarted:
    """A process started by :func:`_start_with_pidfd`."""

    def __init__(self, popen: subprocess.Popen[bytes], exited: asyncio.Event) -> None:
        self._popen = popen
        self._exited = exited

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        await self._exited.wait()
        code = self._popen.returncode
        assert code is not None
        return code


def _pidfds_work() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


PIDFDS = _pidfds_work()


class PrepareFailed(Exception):
    """``prepare`` failed (its ``OSError`` is the cause): nothing was started."""


async def start_shell(
    command: str,
    env: dict[str, str],
    workdir: Path | None,
    prepare: Callable[[], object] | None = None,
    *,
    on_loop: bool = False,
) -> tuple[StepProcess, asyncio.StreamReader, asyncio.Event]:
    """The process, its output (stdout and stderr together), and an event set when it exits.

    ``prepare`` (making ``workdir``, say) runs first, in the thread that forks:
    one hand-off to a thread instead of two. If it raises, :class:`PrepareFailed`.
    ``on_loop`` forks on the loop's thread, with no hand-off (see above).
    """
    if PIDFDS:
        return await _start_with_pidfd(command, env, workdir, prepare, on_loop)
    if prepare is not None:
        await asyncio.to_thread(_prepared, prepare)
    return await _start_in_loop(command, env, workdir)


def _prepared(prepare: Callable[[], object]) -> None:
    try:
        prepare()
    except OSError as exc:
        raise PrepareFailed(str(exc)) from exc


async def _start_with_pidfd(
    command: str,
    env: dict[str, str],
    workdir: Path | None,
    prepare: Callable[[], object] | None,
    on_loop: bool,
) -> tuple[StepProcess, asyncio.StreamReader, asyncio.Event]:
    loop = asyncio.get_running_loop()

    def start() -> subprocess.Popen[bytes]:
        if prepare is not None:
            _prepared(prepare)
        return subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )

    popen = start() if on_loop else await _in_thread(loop, start)
    exited = asyncio.Event()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError:
        popen.kill()
        popen.wait(timeout=5)
        raise

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        popen.poll()  # reaps it: the pidfd says it has exited
        exited.set()

    loop.add_reader(pidfd, on_exit)
    reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
    assert popen.stdout is not None
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), popen.stdout
    )
    return _ThreadStarted(popen, exited), reader, exited


async def _in_thread(
    loop: asyncio.AbstractEventLoop, start: Callable[[], subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    starting = loop.run_in_executor(None, start)
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while the thread forks: the process exists or soon will; end it.
        with contextlib.suppress(Exception):
            late = await starting
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(late.pid, signal.SIGKILL)
            late.wait(timeout=5)
        raise


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process exits, even while a child still holds its output pipe.

    (``Process.wait()`` waits for the pipes to close as well, so a background
    child would hold it until the step's timeout.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=READ_CHUNK, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _start_in_loop(
    command: str, env: dict[str, str], workdir: Path | None
) -> tuple[StepProcess, asyncio.StreamReader, asyncio.Event]:
    loop = asyncio.get_running_loop()
    protocol = _ExitAwareProtocol(loop)
    transport, _ = await loop.subprocess_exec(
        lambda: protocol,
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    process = asyncio.subprocess.Process(transport, protocol, loop)
    assert process.stdout is not None
    return process, process.stdout, protocol.exited
