"""Local ``run`` steps: ``/bin/sh -c`` in a new process session.

Parameters reach the command only as environment variables. Timeout and
cancel kill the whole process group; output is kept up to a bound, masked,
and its tail stored (ARCHITECTURE.md decision 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from engine.executors.base import StepContext, StepOutcome
from engine.masking import Masker
from engine.pipelines import RunSpec
from engine.state import StepStatus
from engine.stepenv import step_environment

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3600.0
LOG_LIMIT = 1_000_000  # characters of output kept per step (the end of it)
TAIL_LINES = 40
TAIL_CHARS = 2800
KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
DRAIN_TIMEOUT = 5.0
READ_CHUNK = 65536


@dataclass
class BoundedLog:
    """Keeps the last ``limit`` characters and counts what it dropped."""

    limit: int = LOG_LIMIT
    parts: list[str] = field(default_factory=list)
    size: int = 0
    dropped: int = 0

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.limit * 2:
            self._compact()

    def _compact(self) -> None:
        joined = "".join(self.parts)
        excess = max(0, len(joined) - self.limit)
        self.dropped += excess
        self.parts = [joined[excess:]]
        self.size = len(self.parts[0])

    def text(self) -> str:
        self._compact()
        return "".join(self.parts)


def tail_of(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-chars:]


@dataclass
class _Running:
    process: asyncio.subprocess.Process
    exited: asyncio.Event
    cancelled: bool = False


class ShellExecutor:
    kind = "run"
    started_status = StepStatus.RUNNING

    def __init__(
        self,
        masker: Masker,
        secrets: list[str],
        workdir: Path | None = None,
    ) -> None:
        self._mask = masker
        self._secrets = secrets
        self._workdir = workdir
        self._running: dict[int, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, ctx: StepContext) -> None:
        task = asyncio.create_task(self._run(ctx), name=f"step-{ctx.step_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, ctx: StepContext) -> None:
        running = self._running.get(ctx.step_id)
        if running is None:
            # Not ours (started before a restart and already dead): just end it.
            await ctx.finish(StepOutcome(StepStatus.CANCELLED, reason="cancelled"))
            return
        if running.cancelled:
            return
        running.cancelled = True
        task = asyncio.create_task(_terminate(running.process, running.exited))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self, ctx: StepContext) -> None:
        if ctx.external_id:
            _kill_stale_group(int(ctx.external_id), ctx.run_id)
        spec = ctx.spec
        if isinstance(spec, RunSpec) and spec.retry_on_restart:
            await self.start(ctx)
            return
        await ctx.finish(StepOutcome(StepStatus.FAILED, reason="interrupted by restart"))

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait (at most ``seconds``) until no step of ours is running; True if none is."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)
        return not self._running

    async def shutdown(self) -> None:
        for running in list(self._running.values()):
            _kill_group(running.process.pid, signal.SIGKILL)
        await self.idle()

    async def _run(self, ctx: StepContext) -> None:
        spec = ctx.spec
        assert isinstance(spec, RunSpec)
        timeout = spec.timeout or ctx.pipeline.timeout or DEFAULT_TIMEOUT
        env = step_environment(
            pipeline_env=ctx.pipeline.env,
            step_env=spec.env,
            parameters=ctx.parameters,
            run_id=ctx.run_id,
            pipeline=ctx.pipeline.name,
            step=spec.name,
            triggered_by=ctx.triggered_by,
            secrets=self._secrets,
        )
        output = BoundedLog()
        try:
            process, exited = await _spawn(spec.run, env, self._workdir)
        except OSError as exc:
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason=f"could not start: {exc}"))
            return
        running = _Running(process, exited)
        self._running[ctx.step_id] = running
        try:
            await ctx.update(external_id=str(process.pid))
            outcome = await self._follow(process, exited, running, output, timeout)
            # Still registered while finishing, so a cancel meanwhile finds it ours.
            await ctx.finish(outcome)
        except asyncio.CancelledError:
            _kill_group(process.pid, signal.SIGKILL)
            raise
        finally:
            self._running.pop(ctx.step_id, None)

    async def _follow(
        self,
        process: asyncio.subprocess.Process,
        exited: asyncio.Event,
        running: _Running,
        output: BoundedLog,
        timeout: float,
    ) -> StepOutcome:
        assert process.stdout is not None
        reader = asyncio.create_task(_read_all(process.stdout, output))
        timed_out = False
        try:
            await asyncio.wait_for(exited.wait(), timeout=timeout)
        except TimeoutError:
            timed_out = True
            await _terminate(process, exited)
        # Whatever the command left behind in its group goes with it.
        _kill_group(process.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(reader, timeout=DRAIN_TIMEOUT)
        except TimeoutError:
            output.append("\n[output truncated: a process kept the output pipe open]\n")
        text = self._mask(output.text())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=DRAIN_TIMEOUT)
        code = process.returncode
        if running.cancelled:
            return StepOutcome(StepStatus.CANCELLED, code, "cancelled", text, output.dropped)
        if timed_out:
            reason = f"timed out after {timeout:g}s"
            return StepOutcome(StepStatus.FAILED, code, reason, text, output.dropped)
        if code == 0:
            return StepOutcome(StepStatus.SUCCESS, 0, None, text, output.dropped)
        reason = (
            f"exited with {code}"
            if code is not None and code >= 0
            else f"killed by signal {-(code or 0)}"
        )
        return StepOutcome(StepStatus.FAILED, code, reason, text, output.dropped)


async def _read_all(stream: asyncio.StreamReader, output: BoundedLog) -> None:
    while chunk := await stream.read(READ_CHUNK):
        output.append(chunk.decode("utf-8", errors="replace"))


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


async def _spawn(
    command: str, env: dict[str, str], workdir: Path | None
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
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
    return process, protocol.exited


async def _terminate(process: asyncio.subprocess.Process, exited: asyncio.Event) -> None:
    _kill_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(exited.wait(), timeout=KILL_GRACE)
    except TimeoutError:
        _kill_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeout=KILL_GRACE)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_stale_group(pgid: int, run_id: int) -> None:
    """Kill a group left by a dead service, if the process is still ours (not a reused pid)."""
    try:
        environ = Path(f"/proc/{pgid}/environ").read_bytes()
    except OSError:
        return
    if f"ANSFLOW_RUN_ID={run_id}".encode() in environ.split(b"\0"):
        log.warning("killing process group %s left running by a previous process", pgid)
        _kill_group(pgid, signal.SIGKILL)
