"""Local ``run`` steps: ``/bin/sh -c`` in a new process session.

Parameters reach the command only as environment variables. Each runs in
its run's own workspace (``engine.workspaces``; ``ANSFLOW_WORKSPACE``).
Timeout and cancel kill the whole process group; output is decoded as it
comes (a character split across reads stays whole), kept up to a bound,
masked, and its tail stored (ARCHITECTURE.md decision 6); while the step runs
it is written into the step's row now and then and published as ``StepLog``
events (``engine.output``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import EventBus, StepLog
from engine.executors.base import StepContext, StepOutcome, step_timeout
from engine.executors.spawn import READ_CHUNK, PrepareFailed, StepProcess, start_shell
from engine.masking import Masker
from engine.output import LOG_LIMIT, BoundedLog, LiveLog, tail_of
from engine.pipelines import RunSpec
from engine.state import StepStatus
from engine.stepenv import step_environment
from engine.workspaces import Workspaces
from storage.models import StepRun

log = logging.getLogger(__name__)

__all__ = ["LOG_LIMIT", "BoundedLog", "ShellExecutor", "tail_of"]

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
DRAIN_TIMEOUT = 5.0
# A step still running after this long gets its process id stored (for whoever
# adopts it if this replica dies); shorter ones never cost that write.
RECORD_PID_AFTER = 0.05
PROC_SCAN_LIMIT = 100_000
SHUTDOWN_ROUNDS = 10
FINISH_GRACE = 5.0  # seconds a step storing its end is given when the service stops


@dataclass
class _Running:
    run_id: int
    process: StepProcess
    exited: asyncio.Event
    output: LiveLog
    cancelled: bool = False


class ShellExecutor:
    kind = "run"
    started_status = StepStatus.RUNNING

    def __init__(
        self,
        masker: Masker,
        secrets: list[str],
        workdir: Path | None = None,
        *,
        workspaces: Workspaces | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._mask = masker
        self._secrets = secrets
        self._workdir = workdir  # where steps run when there are no per-run workspaces
        self.workspaces = workspaces
        self._bus = bus
        self._running: dict[int, _Running] = {}
        self._starting = 0  # steps between "start" and registered in _running
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._finishing: set[asyncio.Task[Any]] = set()

    def busy_runs(self) -> set[int]:
        """Runs with a step of theirs running in this process."""
        return {running.run_id for running in self._running.values()}

    def live_log(self, step_id: int) -> str | None:
        """A step running here: its output so far (masked); None when not ours."""
        running = self._running.get(step_id)
        return running.output.visible() if running is not None else None

    async def start(self, ctx: StepContext) -> None:
        if self._stopped:
            return  # stopping: the step stays running, ours, for whoever adopts it
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
        marks = _step_marks(ctx.run_id, ctx.pipeline.name, ctx.step_name)
        if ctx.external_id:
            _kill_stale_group(int(ctx.external_id), marks)
        else:  # it died before the pid was stored: look for the step's group on this host
            found = _find_stale_group(marks)
            if found is not None:
                _kill_stale_group(found, marks)
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
        """Stop now: every group is killed and its step left ``running``, owned by
        this replica, for whoever adopts it once the lease ends (as if it had died:
        "interrupted", or run again with ``retry_on_restart``)."""
        self._stopped = True
        for _ in range(SHUTDOWN_ROUNDS):  # a step ending meanwhile may have started another
            tasks = list(self._tasks)
            if not tasks:
                return
            # A step already storing its end finishes that (bounded): cancelling a
            # task while it opens a transaction would leave SQLite's lock held.
            for task in tasks:
                if task not in self._finishing:
                    task.cancel()
            for running in list(self._running.values()):
                _kill_group(running.process.pid, signal.SIGKILL)
            _, late = await asyncio.wait(tasks, timeout=FINISH_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish(self, ctx: StepContext, outcome: StepOutcome) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._finishing.add(task)
        try:
            await ctx.finish(outcome)
        finally:
            self._finishing.discard(task)

    async def _run(self, ctx: StepContext) -> None:
        spec = ctx.spec
        assert isinstance(spec, RunSpec)
        timeout = step_timeout(spec, ctx.pipeline)
        workdir = self._workdir
        prepare = None
        if self.workspaces is not None:
            self.workspaces.start()
            workdir, prepare = self.workspaces.preparing(ctx.run_id)
        env = step_environment(
            pipeline_env=ctx.pipeline.env,
            step_env=spec.env,
            parameters=ctx.parameters,
            run_id=ctx.run_id,
            pipeline=ctx.pipeline.name,
            step=spec.name,
            triggered_by=ctx.triggered_by,
            secrets=self._secrets,
            workspace=str(workdir) if self.workspaces is not None and workdir else None,
        )
        output = self._live_log(ctx)
        alone = not self._starting and all(r.exited.is_set() for r in self._running.values())
        self._starting += 1
        try:
            process, stdout, exited = await start_shell(
                spec.run, env, workdir, prepare, on_loop=alone
            )
        except PrepareFailed as exc:
            reason = f"could not create the run's workspace: {exc}"
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason=reason))
            return
        except OSError as exc:
            await ctx.finish(StepOutcome(StepStatus.FAILED, reason=f"could not start: {exc}"))
            return
        finally:
            self._starting -= 1
        running = _Running(ctx.run_id, process, exited, output)
        self._running[ctx.step_id] = running

        async def record_pid() -> None:
            await ctx.update(external_id=str(process.pid))

        try:
            outcome = await self._follow(process, stdout, exited, running, timeout, record_pid)
            # Still registered while finishing, so a cancel meanwhile finds it ours.
            await self._finish(ctx, outcome)
        except asyncio.CancelledError:
            _kill_group(process.pid, signal.SIGKILL)
            output.abort()
            raise
        finally:
            self._running.pop(ctx.step_id, None)

    def _live_log(self, ctx: StepContext) -> LiveLog:
        step_id = ctx.step_id

        async def write(text: str, tail: str, dropped: int) -> None:
            await StepRun.filter(id=step_id, status=StepStatus.RUNNING.value).update(
                log=text, log_tail=tail, log_dropped=dropped
            )

        bus, run = self._bus, ctx.run
        if bus is None or run is None:
            return LiveLog(self._mask, write=write)

        async def publish(lines: tuple[str, ...]) -> None:
            event = StepLog(run=run, step_id=step_id, step_name=ctx.step_name, lines=lines)
            await bus.publish(event)

        return LiveLog(self._mask, write=write, publish=publish)

    async def _follow(
        self,
        process: StepProcess,
        stdout: asyncio.StreamReader,
        exited: asyncio.Event,
        running: _Running,
        timeout: float,
        record_pid: Callable[[], Awaitable[None]],
    ) -> StepOutcome:
        live = running.output
        output = live.output
        reader = asyncio.create_task(_read_all(stdout, live))
        timed_out = False
        try:
            first = min(timeout, RECORD_PID_AFTER)
            if not await _exits_within(exited, first):
                await record_pid()
                async with asyncio.timeout(timeout - first):
                    await exited.wait()
        except TimeoutError:
            timed_out = True
            await _terminate(process, exited)
        # Whatever the command left behind in its group goes with it.
        _kill_group(process.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await reader
        except TimeoutError:
            live.append("\n[output truncated: a process kept the output pipe open]\n")
        await live.close()
        text = self._mask(output.text())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await process.wait()
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


async def _exits_within(exited: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await exited.wait()
    except TimeoutError:
        return False
    return True


async def _read_all(stream: asyncio.StreamReader, output: LiveLog) -> None:
    """Decode as the bytes come: a character split across two reads stays whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(READ_CHUNK):
        output.append(decoder.decode(chunk))
    output.append(decoder.decode(b"", final=True))


async def _terminate(process: StepProcess, exited: asyncio.Event) -> None:
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


def _step_marks(run_id: int, pipeline: str, step_name: str) -> set[bytes]:
    """What the environment of a step's command says of it (``engine.stepenv``)."""
    return {
        f"ANSFLOW_RUN_ID={run_id}".encode(),
        f"ANSFLOW_PIPELINE={pipeline}".encode(),
        f"ANSFLOW_STEP={step_name}".encode(),
    }


def _leads_step_group(pid: int, marks: set[bytes]) -> bool:
    """Is ``pid`` alive, the leader of its group, and that step's command (not a reused pid)?"""
    try:
        if os.getpgid(pid) != pid:
            return False
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    return marks <= environ


def _kill_stale_group(pgid: int, marks: set[bytes]) -> None:
    """Kill a step's group left by a dead service, if it is still that step's."""
    if _leads_step_group(pgid, marks):
        log.warning("killing process group %s left running by a previous process", pgid)
        _kill_group(pgid, signal.SIGKILL)


def _find_stale_group(marks: set[bytes], limit: int = PROC_SCAN_LIMIT) -> int | None:
    """The process group a step leads on this host, if one is still alive.

    Each step's command leads a session of its own (pid = group id) and carries
    its run id, pipeline and step name in its environment.
    """
    try:
        entries = [e for e in os.listdir("/proc")[:limit] if e.isdigit()]
    except OSError:
        return None
    return next((int(e) for e in entries if _leads_step_group(int(e), marks)), None)
