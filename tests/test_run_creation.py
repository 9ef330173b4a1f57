"""A run and its steps are stored together: each step belongs to its run, in order.

On PostgreSQL the run's row and its steps' go in one statement (the steps
name the run's new id there); on SQLite, or for a very long pipeline, in
more. Either way what is stored, and the objects the engine holds, agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from storage import runs as store
from storage.models import Run, StepRun
from storage.sql import INSERT_CHUNK
from tests.engine_harness import engine_on


async def create(steps: int) -> tuple[Run, list[StepRun]]:
    async with in_transaction() as conn:
        return await store.create_run(
            pipeline="p",
            definition={"name": "p", "steps": []},
            parameters={"version": "1.4"},
            steps=[(str(i), f"step {i}", "shell") for i in range(steps)],
            trigger_type="api",
            triggered_by="U1",
            source="api",
            channel_id="C1",
            cicd_tool_id=None,
            conn=conn,
            owner="replica-a",
        )


@pytest.mark.parametrize("steps", [1, 3, INSERT_CHUNK + 1])
async def test_a_run_is_stored_with_its_steps_in_order(
    database_url: str, tmp_path: Path, steps: int
) -> None:
    async with engine_on(database_url, tmp_path):
        other, _ = await create(2)  # another run's steps come first in the table
        run, held = await create(steps)
        stored_run = await Run.get(id=run.id)
        stored = await StepRun.filter(run_id=run.id).order_by("position")
        assert run.id != other.id
        assert (stored_run.pipeline, stored_run.parameters) == ("p", {"version": "1.4"})
        assert stored_run.owner == "replica-a" and stored_run.status == "pending"
        assert [s.id for s in stored] == [s.id for s in held]
        assert [s.id for s in held] == sorted(s.id for s in held)
        assert [(s.position, s.name, s.run_id) for s in stored] == [
            (i, f"step {i}", run.id) for i in range(steps)
        ]
        assert all(s.run_id == run.id and s.status == "pending" for s in held)
        assert await StepRun.filter(run_id=other.id).count() == 2
