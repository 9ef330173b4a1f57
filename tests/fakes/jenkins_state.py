"""The model behind the fake Jenkins: jobs, folders, the queue and builds.

Pure state, no I/O. Time moves only when `advance()` is called; the HTTP layer
calls it at the start of every request, so what a client sees depends on the
clock and on what the test told the fake (hold, release, finish), never on a
background task. Callers hold `lock` around every use (the fake may serve from
its own thread while a test drives it from another).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

RESULTS = frozenset({"SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED"})
PARAM_TYPES = {
    "string": "StringParameterDefinition",
    "text": "TextParameterDefinition",
    "choice": "ChoiceParameterDefinition",
    "boolean": "BooleanParameterDefinition",
    "password": "PasswordParameterDefinition",
}
ParamSpec = tuple[str, str] | tuple[str, str, object]


class Refused(Exception):
    """Jenkins answers the request with an HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ParamDef:
    name: str
    type: str
    default: str
    choices: list[str] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: ParamSpec) -> ParamDef:
        """`("V", "string", "1.0")`, `("ENV", "choice", ["a", "b"])`, `("X", "boolean", True)`."""
        name, kind = spec[0], spec[1]
        raw = spec[2] if len(spec) > 2 else ""
        if kind not in PARAM_TYPES:
            raise ValueError(f"unknown parameter type {kind!r}")
        if kind == "choice":
            choices = [str(c) for c in raw] if isinstance(raw, list | tuple) else [str(raw)]
            return cls(name, kind, choices[0] if choices else "", choices)
        if isinstance(raw, bool):
            return cls(name, kind, "true" if raw else "false")
        return cls(name, kind, "" if raw is None else str(raw))


@dataclass
class Script:
    """What the next builds of a job do."""

    result: str = "SUCCESS"
    duration: float = 0.2
    console: str = ""


@dataclass
class Build:
    job: str
    number: int
    params: dict[str, str]
    queue_id: int
    user: str
    script: Script
    started: float
    started_ms: int
    result: str | None = None
    finished: float | None = None
    abort_requested: bool = False
    aborted_by: str | None = None
    extra_console: list[str] = field(default_factory=list)

    @property
    def building(self) -> bool:
        return self.result is None


@dataclass
class Job:
    full_name: str
    params: list[ParamDef]
    disabled: bool = False
    kind: str = "freestyle"
    script: Script = field(default_factory=Script)
    hold: bool = False
    hold_queue: bool = False
    next_build_number: int = 1
    builds: dict[int, Build] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


@dataclass
class QueueItem:
    id: int
    job: str
    params: dict[str, str] | None
    user: str
    since: float
    since_ms: int
    ready_at: float
    cancelled: bool = False
    build_number: int | None = None
    left_at: float | None = None

    @property
    def waiting(self) -> bool:
        return self.left_at is None


class JenkinsState:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.wall = wall
        self.jobs: dict[str, Job] = {}
        self.queue: dict[int, QueueItem] = {}
        self.queue_delay = 0.0
        self.queue_item_ttl = 300.0
        self._next_queue_id = 1

    # -- registry ---------------------------------------------------------

    def add_job(
        self,
        full_name: str,
        params: Iterable[ParamSpec] = (),
        *,
        disabled: bool = False,
        kind: str = "freestyle",
        script: Script | None = None,
    ) -> Job:
        parts = full_name.strip("/").split("/")
        if not all(parts):
            raise ValueError(f"bad job name {full_name!r}")
        name = "/".join(parts)
        if name in self.folders() or any(f in self.jobs for f in _prefixes(name)):
            raise ValueError(f"{name!r} clashes with a folder or job")
        job = Job(name, [ParamDef.from_spec(p) for p in params], disabled, kind, script or Script())
        self.jobs[name] = job
        return job

    def job(self, full_name: str) -> Job:
        job = self.jobs.get(full_name)
        if job is None:
            raise Refused(404, f"No such job: {full_name}")
        return job

    def folders(self) -> set[str]:
        return {prefix for name in self.jobs for prefix in _prefixes(name)}

    def children(self, folder: str) -> list[tuple[str, bool]]:
        """Immediate children of a folder ("" = root) as (full name, is folder), sorted."""
        start = f"{folder}/" if folder else ""
        found: dict[str, bool] = {}
        for name in self.jobs:
            if name.startswith(start):
                head, sep, _ = name[len(start) :].partition("/")
                found[start + head] = found.get(start + head, False) or bool(sep)
        return sorted(found.items())

    # -- queue --------------------------------------------------------------

    def schedule(
        self, job_name: str, params: dict[str, str] | None, user: str
    ) -> tuple[QueueItem, bool]:
        """Queue a build as `/build` (params None) or `/buildWithParameters` does.

        Returns the item and whether it is new (False: an identical one waits).
        """
        job = self.job(job_name)
        if job.disabled:
            raise Refused(409, f"{job.full_name} is not buildable!")
        values: dict[str, str] | None = None
        if params is None and job.params:
            raise Refused(400, "Nothing is submitted")
        if params is not None:
            if not job.params:
                raise Refused(
                    500, "java.lang.IllegalStateException: This build is not parameterized!"
                )
            values = {d.name: params.get(d.name, d.default) for d in job.params}
        for item in self.queue.values():
            if item.waiting and item.job == job.full_name and item.params == values:
                return item, False
        now = self.clock()
        item = QueueItem(
            id=self._next_queue_id,
            job=job.full_name,
            params=values,
            user=user,
            since=now,
            since_ms=self._wall_ms(),
            ready_at=now + self.queue_delay,
        )
        self._next_queue_id += 1
        self.queue[item.id] = item
        return item, True

    def waiting_items(self) -> list[QueueItem]:
        return sorted((i for i in self.queue.values() if i.waiting), key=lambda i: i.id)

    def cancel_item(self, item_id: int) -> bool:
        item = self.queue.get(item_id)
        if item is None or not item.waiting:
            return False
        item.cancelled = True
        item.left_at = self.clock()
        return True

    # -- builds ---------------------------------------------------------------

    def build(self, job_name: str, number: int) -> Build:
        build = self.job(job_name).builds.get(number)
        if build is None:
            raise Refused(404, f"No build #{number} of {job_name}")
        return build

    def running_builds(self) -> list[Build]:
        return [b for j in self.jobs.values() for b in j.builds.values() if b.building]

    def request_stop(self, job_name: str, number: int, user: str) -> Build:
        """Mark a build for abort; it turns ABORTED on the next `advance()`."""
        build = self.build(job_name, number)
        if build.building and not build.abort_requested:
            build.abort_requested = True
            build.aborted_by = user
        return build

    def finish(self, build: Build, result: str) -> None:
        if result not in RESULTS:
            raise ValueError(f"unknown result {result!r}")
        if build.building:
            build.result = result
            build.finished = self.clock()

    def release(self, job_name: str, result: str | None = None) -> list[Build]:
        """End the hold on a job and finish its running builds now."""
        job = self.job(job_name)
        job.hold = False
        running = [b for b in job.builds.values() if b.building]
        for build in running:
            self.finish(build, result or build.script.result)
        return running

    def console(self, build: Build) -> str:
        lines = [
            f"Started by user {build.user}",
            f"Building in workspace /var/jenkins_home/workspace/{build.job}",
        ]
        script_lines = build.script.console.splitlines()
        if build.building and not self.job(build.job).hold and build.script.duration > 0:
            share = (self.clock() - build.started) / build.script.duration
            script_lines = script_lines[: int(len(script_lines) * min(share, 1.0))]
        lines += script_lines + build.extra_console
        if build.result == "ABORTED" and build.aborted_by:
            lines.append(f"Aborted by {build.aborted_by}")
        if not build.building:
            lines.append(f"Finished: {build.result}")
        return "".join(f"{line}\n" for line in lines)

    # -- time -----------------------------------------------------------------

    def advance(self) -> None:
        """Start due queue items, end due builds, forget old left items."""
        now = self.clock()
        for item in self.waiting_items():
            job = self.jobs.get(item.job)
            if job is not None and not job.hold_queue and now >= item.ready_at:
                self._start(job, item, now)
        for build in self.running_builds():
            job = self.jobs[build.job]
            if build.abort_requested:
                self.finish(build, "ABORTED")
            elif not job.hold and now >= build.started + build.script.duration:
                self.finish(build, build.script.result)
        for item in list(self.queue.values()):
            if item.left_at is not None and now - item.left_at > self.queue_item_ttl:
                del self.queue[item.id]

    def _start(self, job: Job, item: QueueItem, now: float) -> None:
        build = Build(
            job=job.full_name,
            number=job.next_build_number,
            params=dict(item.params or {}),
            queue_id=item.id,
            user=item.user,
            script=Script(job.script.result, job.script.duration, job.script.console),
            started=now,
            started_ms=self._wall_ms(),
        )
        job.next_build_number += 1
        job.builds[build.number] = build
        item.build_number = build.number
        item.left_at = now

    def _wall_ms(self) -> int:
        return int(self.wall() * 1000)


def _prefixes(name: str) -> Sequence[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
