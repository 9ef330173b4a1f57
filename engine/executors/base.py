"""What the runner gives an executor, and what an executor gives back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.events import RunSnapshot
from engine.pipelines import LeafStep, Pipeline
from engine.state import StepStatus

# Seconds a shell or Jenkins step may take when neither it nor its pipeline says.
DEFAULT_TIMEOUT = 3600.0


def step_timeout(spec: LeafStep, pipeline: Pipeline) -> float:
    """The step's ``timeout``, else the pipeline's, else ``DEFAULT_TIMEOUT``."""
    return float(spec.timeout or pipeline.timeout or DEFAULT_TIMEOUT)


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    exit_code: int | None = None
    reason: str | None = None
    log: str | None = None
    log_dropped: int = 0
    external_url: str | None = None


@dataclass
class StepContext:
    run_id: int
    step_id: int
    step_name: str
    attempt: int
    spec: LeafStep
    pipeline: Pipeline
    parameters: dict[str, str]
    triggered_by: str
    external_id: str | None
    external_url: str | None
    external_state: dict[str, Any] | None
    # Ends the step (compare-and-set from its active status) and moves the run on.
    finish: Callable[[StepOutcome], Awaitable[bool]]
    # Stores non-status fields (external ids and URLs, state) and announces them.
    update: Callable[..., Awaitable[None]]
    extra: dict[str, Any] = field(default_factory=dict)
    # The run as it stood when the context was made (for events such as ``StepLog``).
    run: RunSnapshot | None = None


class Executor(Protocol):
    """Runs one kind of step. ``start`` returns promptly; long work runs in tasks."""

    kind: str
    # The status a step takes when it starts (running; waiting_approval for approvals).
    started_status: StepStatus

    async def start(self, ctx: StepContext) -> None: ...

    async def cancel(self, ctx: StepContext) -> None:
        """Stop the work; the step ends ``cancelled`` through ``ctx.finish``."""

    async def recover(self, ctx: StepContext) -> None:
        """The step was active when the service stopped: resume, or end it."""


class NotSupportedExecutor:
    """A step kind whose executor is not installed: fail clearly, never hang."""

    started_status = StepStatus.RUNNING

    def __init__(self, kind: str, why: str) -> None:
        self.kind = kind
        self._why = why

    async def start(self, ctx: StepContext) -> None:
        await ctx.finish(StepOutcome(StepStatus.FAILED, reason=self._why))

    async def cancel(self, ctx: StepContext) -> None:
        await ctx.finish(StepOutcome(StepStatus.CANCELLED, reason="cancelled"))

    async def recover(self, ctx: StepContext) -> None:
        await ctx.finish(StepOutcome(StepStatus.FAILED, reason=self._why))
