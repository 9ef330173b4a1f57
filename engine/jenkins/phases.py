"""What a Jenkins step remembers between requests, and the pure decisions about it.

A step's ``external_state`` (JSON in ``StepRun``) is a :class:`FollowState`.
Its ``phase`` moves ``triggering → queued → building`` and is stored before
the request that depends on it (ARCHITECTURE.md decision 10): a change
violates this when a POST to Jenkins happens before the ``triggering`` state
(with its marker and lower bound) is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.executors.base import StepOutcome
from engine.jenkins.models import BuildInfo, QueueItem
from engine.state import StepStatus

# A job that declares this string parameter gets a value unique to each step attempt.
MARKER_PARAM = "ANSFLOW_RUN_STEP"
TRIGGERING, QUEUED, BUILDING = "triggering", "queued", "building"
FAILED_RESULTS = frozenset({"FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT"})

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class FollowState:
    phase: str
    tool: str
    job: str
    marker: str
    params: dict[str, str] = field(default_factory=dict)  # as the pipeline asks
    # What Jenkins keeps of the parameters sent (the job's declared ones): what we match on.
    match: dict[str, str] = field(default_factory=dict)
    # Known once the job was read: does it declare MARKER_PARAM; its next build number
    # just before the POST (None: no POST can have been sent yet).
    marked: bool = False
    bound: int | None = None
    since: float | None = None  # wall clock (s) just before the POST
    queue: int | None = None
    build: int | None = None
    timeout: float | None = None  # seconds the step may take (from the pipeline)
    deadline: float | None = None  # wall clock (s) past which the step times out
    stop_requested_at: float | None = None  # wall clock (s) of a cancel
    stop_sent: bool = False

    @property
    def posted_maybe(self) -> bool:
        """A POST may have reached Jenkins (so look before triggering again)."""
        return self.bound is not None or self.queue is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def but(self, **changes: Any) -> FollowState:
        return replace(self, **changes)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> FollowState | None:
        if not data or "phase" not in data or "job" not in data:
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError:
            return None


def substitute(values: Mapping[str, str], parameters: Mapping[str, str]) -> dict[str, str]:
    """``${name}`` in each value replaced by the run parameter (plain text, no shell).

    A name the run does not have is left as written.
    """

    def one(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: parameters.get(m.group(1), m.group(0)), text)

    return {key: one(value) for key, value in values.items()}


def marker_for(run_id: int, step_id: int, attempt: int) -> str:
    return f"{run_id}-{step_id}-{attempt}"


@dataclass(frozen=True)
class Sending:
    params: dict[str, str]  # the POST's parameters
    match: dict[str, str]  # those Jenkins keeps (declared by the job)
    marked: bool


def parameters_to_send(
    wanted: Mapping[str, str], declared: Iterable[tuple[str, str | None]], marker: str
) -> Sending:
    """The parameters of the POST, and what of them a queue item or build will show.

    ``declared`` are the job's (name, default). A parameterized job is always
    sent parameters (Jenkins answers 400 to ``/build`` on one); the marker goes
    only to a job that declares it. Jenkins drops parameters a job does not declare.
    """
    names = dict(declared)
    sent = dict(wanted)
    if names and not sent:
        sent = {name: default for name, default in names.items() if default is not None}
    marked = MARKER_PARAM in names
    if marked:
        sent[MARKER_PARAM] = marker
    match = {k: v for k, v in sent.items() if k in names}
    return Sending(sent, match, marked)


def is_ours_queued(item: QueueItem, state: FollowState) -> bool:
    """A waiting queue item is ours when it carries our marker (or, unmarked, our parameters)."""
    if state.marked:
        return item.parameters.get(MARKER_PARAM) == state.marker
    return _includes(item.parameters, state.match)


def our_build(builds: Iterable[BuildInfo], state: FollowState) -> BuildInfo | None:
    """The build our trigger produced, if Jenkins started it (see ``is_ours_queued``).

    Unmarked, the candidates are builds numbered from ``bound`` (the job's next
    build number just before our POST) with our parameters; the oldest wins.
    """
    if state.marked:
        return next((b for b in builds if b.parameters.get(MARKER_PARAM) == state.marker), None)
    if state.bound is None:
        return None
    candidates = [
        b for b in builds if b.number >= state.bound and _includes(b.parameters, state.match)
    ]
    return min(candidates, key=lambda b: b.number, default=None)


def _includes(have: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def build_outcome(build: BuildInfo, console_tail: str | None, cancelling: bool) -> StepOutcome:
    """What a finished build means for its step."""
    url = build.url
    if build.result == "SUCCESS":
        return StepOutcome(StepStatus.SUCCESS, external_url=url)
    if cancelling and build.result == "ABORTED":
        return StepOutcome(
            StepStatus.CANCELLED,
            reason=f"cancelled; Jenkins build #{build.number} was aborted",
            log=console_tail,
            external_url=url,
        )
    return StepOutcome(
        StepStatus.FAILED,
        reason=f"Jenkins build #{build.number} finished {build.result or 'without a result'}",
        log=console_tail,
        external_url=url,
    )


def backoff(failures: int, base: float, cap: float) -> float:
    """Wait after ``failures`` failures in a row: doubling from ``base`` up to ``cap``."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


RETRYING = "; retrying"


def unreachable_note(tool: str, detail: str) -> str:
    """A running step's reason while its Jenkins cannot be reached (cleared once it answers)."""
    return f"Jenkins {tool} unreachable: {detail}{RETRYING}"


def timed_out_reason(timeout: float | None, note: str | None = None) -> str:
    """Why a step ended at its timeout; says so if Jenkins was unreachable at the time."""
    reason = f"timed out after {timeout or 0:g}s"
    if note and note.endswith(RETRYING):
        reason += f" ({note.removesuffix(RETRYING)})"
    return reason
