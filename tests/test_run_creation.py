"""A run and its steps are stored together: each step belongs to its run, in order.

On PostgreSQL the run's row and its steps' go in one statement (the steps
name the run's new id there); on SQLite, or for a very long pipeline, in
more. Either way what is stored, and the objects the engine holds, agree.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from engine.events import EventBus
from engine.rounds import RoundLost, round_of
from engine.runner import RunRequest
from engine.state import StepStatus
from engine.transitions import queue_move_step
from storage import runs as store
from storage.models import Run, StepRun
from storage.notify import notify_all
from storage.sql import INSERT_CHUNK
from tests.engine_harness import CLI, engine_on
from tests.helpers import write_pipeline
from tests.test_round_writes import heard_nothing_more, hearing


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


def fields() -> dict[str, object]:
    return {
        "pipeline": "p",
        "definition": {"name": "p", "steps": []},
        "parameters": {"version": "1.4"},
        "trigger_type": "api",
        "triggered_by": "U1",
        "source": "api",
        "channel_id": "C1",
        "cicd_tool_id": None,
        "owner": "replica-a",
    }


@pytest.mark.postgres
async def test_a_run_started_in_its_first_round_goes_in_with_that_rounds_changes(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL, nothing else to commit with it: the run, its steps as the first round
    left them, and its notices are one statement: all stored and told, or nothing."""
    async with engine_on(pg_url, tmp_path), hearing(pg_url, "t_new") as heard:
        other, _ = await create(2)
        async with round_of(EventBus(), alone=True) as first:
            run, held = await store.reserve_run(
                steps=[("0", "a", "shell"), ("1", "b", "shell")],
                writes=first.writes,
                started_at=store.now(),
                **fields(),  # type: ignore[arg-type]
            )
            assert run.id > other.id and held[0].id < held[1].id
            created = run.created_at
            assert created is not None  # its snapshots are told before it is stored
            assert queue_move_step(held[0], StepStatus.RUNNING, first.writes)
            assert first.writes.changes == []  # on the new row, not a statement of its own
            await notify_all("t_new", [f"run {run.id}", f"step {held[0].id}"], first.conn)
            assert await Run.filter(id=run.id).count() == 0  # nothing sent yet
        stored = await StepRun.filter(run_id=run.id).order_by("position")
        assert [(s.id, s.status, s.version) for s in stored] == [
            (held[0].id, "running", 1),
            (held[1].id, "pending", 0),
        ]
        stored_run = await Run.get(id=run.id)
        assert (stored_run.status, stored_run.created_at) == ("running", created)
        assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == [
            f"run {run.id}",
            f"step {held[0].id}",
        ]

        # The statement fails (here: a step row that cannot go in): nothing of it.
        with pytest.raises(IntegrityError):
            async with round_of(EventBus(), alone=True) as first:
                lost, rows = await store.reserve_run(
                    steps=[("0", "a", "shell"), ("0", "again", "shell")],  # one path twice
                    writes=first.writes,
                    started_at=store.now(),
                    **fields(),  # type: ignore[arg-type]
                )
                await notify_all("t_new", ["lost"], first.conn)
        assert await Run.filter(id=lost.id).count() == 0
        assert await StepRun.filter(id__in=[r.id for r in rows]).count() == 0
        await heard_nothing_more(heard, "t_new")


@pytest.mark.postgres
async def test_a_new_runs_round_that_changes_another_row_commits_all_together(
    pg_url: str, tmp_path: Path
) -> None:
    async with engine_on(pg_url, tmp_path):
        _, (older, _) = await create(2)
        await StepRun.filter(id=older.id).update(status="skipped")  # moved since it was held
        with pytest.raises(RoundLost):
            async with round_of(EventBus(), alone=True) as first:
                run, _ = await store.reserve_run(
                    steps=[("0", "a", "shell")],
                    writes=first.writes,
                    started_at=store.now(),
                    **fields(),  # type: ignore[arg-type]
                )
                assert queue_move_step(older, StepStatus.RUNNING, first.writes)  # will lose
        assert await Run.filter(id=run.id).count() == 0  # went down with the lost change


LONG = 1800


@pytest.mark.postgres
async def test_a_pipeline_too_long_for_one_statement_is_created_whole(
    pg_url: str, tmp_path: Path
) -> None:
    """More steps than one statement takes (PostgreSQL's 32,767 values, 19 a step): the
    run is created, all its steps with it, and it starts."""
    gated = "name: long\nsteps:\n  - name: Approve\n    approval:\n      approvers: [U_A]\n"
    gated += "".join(f"  - {{name: s{i}, run: 'true'}}\n" for i in range(LONG - 1))
    write_pipeline(tmp_path, "long", gated)
    async with engine_on(pg_url, tmp_path) as core:
        started = await core.engine.start_run(RunRequest("long", {}, CLI))
        assert await StepRun.filter(run_id=started.id).count() == LONG
        gate = await StepRun.get(run_id=started.id, position=0)
        assert gate.status == "waiting_approval"
