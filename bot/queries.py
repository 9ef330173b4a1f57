"""Read-only queries the bot needs beyond ``storage.runs``."""

from __future__ import annotations

from engine.events import RunSnapshot
from engine.snapshots import run_snapshot
from storage.models import OutboxMessage, Run


async def recent_runs_of(user_id: str, limit: int) -> list[RunSnapshot]:
    runs = await Run.filter(triggered_by=user_id).order_by("-id").limit(limit)
    return [run_snapshot(run, []) for run in runs]


async def log_attached(step_id: int) -> bool:
    """Whether the step's whole log was (or is being) uploaded to its run's thread."""
    return await OutboxMessage.filter(kind="file", step_id=step_id).exclude(state="dead").exists()


async def rerun_of(run_id: int) -> int | None:
    """The run ``run_id`` repeats (its Rerun button), if any."""
    rows = await Run.filter(id=run_id).values_list("rerun_of", flat=True)
    return int(rows[0]) if rows and rows[0] is not None else None  # type: ignore[call-overload]
