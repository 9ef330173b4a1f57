"""Step rows carry a change counter, and the engine's kept rows obey it.

The engine keeps the step rows it has read and, at each step boundary, reads
again only those whose ``version`` moved (``storage.runs.read_run_and_steps``).
What a user relies on: a change written by anyone else (another replica, the
ORM, a person at ``psql``) is seen at the next boundary, exactly as if every
row were read again.
"""

from __future__ import annotations

from pathlib import Path

from tortoise import connections
from tortoise.transactions import in_transaction

from ansflow.wiring import Core
from engine.executors.base import StepOutcome
from engine.permissions import Actor
from engine.runner import RunRequest
from engine.snapshots import step_snapshot
from engine.state import RunStatus, StepStatus
from storage import runs as store
from storage.models import Run, StepRun
from tests.engine_harness import engine_on
from tests.helpers import eventually, write_pipeline

STARTER = Actor("U_STARTER", "C1")

# Long enough for its rows to be kept between drives (store.KEEP_FROM).
GATED = """\
name: gated
steps:
  - name: Approve
    approval:
      approvers: [U_A]
""" + "".join(f"  - {{name: deploy{i}, run: echo deployed}}\n" for i in range(store.KEEP_FROM))


async def waiting_for_approval(core: Core, run_id: int) -> None:
    async def waiting() -> bool:
        return (await core.engine.snapshot(run_id)).status == RunStatus.WAITING_APPROVAL

    await eventually(waiting)


async def stored_version(step_id: int) -> int:
    rows = await StepRun.filter(id=step_id).values_list("version", flat=True)
    return int(rows[0])  # type: ignore[call-overload]


async def make_run(steps: int) -> tuple[int, list[StepRun]]:
    async with in_transaction() as conn:
        run, rows = await store.create_run(
            pipeline="p",
            definition={},
            parameters={},
            steps=[(str(i), f"s{i}", "shell") for i in range(steps)],
            trigger_type="manual",
            triggered_by="U1",
            source="cli",
            channel_id=None,
            cicd_tool_id=None,
            conn=conn,
        )
    return run.id, rows


async def test_every_update_of_a_step_row_bumps_its_version_once(
    database_url: str, tmp_path: Path
) -> None:
    async with engine_on(database_url, tmp_path):
        _, (step, _) = await make_run(2)
        assert await stored_version(step.id) == 0

        # A compare-and-set of ours: stored and kept versions move together.
        async with in_transaction() as conn:
            assert await store.set_step_status(step, "running", ["pending"], conn)
        assert step.version == 1 == await stored_version(step.id)

        # The ORM, as other code (or another release) writes: the trigger bumps it.
        await StepRun.filter(id=step.id).update(reason="retrying")
        assert await stored_version(step.id) == 2
        # Plain SQL, as a person at a database prompt writes.
        count, _ = await connections.get("default").execute_query(
            "UPDATE step_run SET log_tail = 'x' WHERE id = " + str(int(step.id))
        )
        assert count == 1  # the trigger's own change is not counted as a second row
        assert await stored_version(step.id) == 3

        async with in_transaction() as conn:
            await store.update_step_fields(step, conn, external_id="42")
        assert await stored_version(step.id) == 4
        assert step.version == 2  # kept behind: the next read takes the row again


async def test_kept_rows_are_read_again_only_where_the_version_moved(
    database_url: str, tmp_path: Path
) -> None:
    async with engine_on(database_url, tmp_path):
        run_id, _ = await make_run(store.KEEP_FROM + 2)
        loaded = await store.read_run_and_steps(run_id)
        assert loaded is not None
        kept = loaded[1]
        await StepRun.filter(id=kept[1].id).update(reason="changed elsewhere")

        again = await store.read_run_and_steps(run_id, known=kept)
        assert again is not None
        run, steps = again
        assert run.id == run_id
        assert [s.id for s in steps] == [s.id for s in kept]  # by position, as ever
        assert steps[1] is not kept[1]
        unchanged = [i for i in range(len(kept)) if i != 1]
        assert all(steps[i] is kept[i] for i in unchanged)  # not decoded again
        assert steps[1].reason == "changed elsewhere"
        assert steps[1].version == await stored_version(kept[1].id)
        # Read with kept rows, or without: the same values.
        whole = await store.read_run_and_steps(run_id)
        assert whole is not None
        assert [(s.id, s.status, s.reason, s.version) for s in whole[1]] == [
            (s.id, s.status, s.reason, s.version) for s in steps
        ]

        assert await store.read_run_and_steps(run_id + 1000, known=kept) is None

        # Many rows changed at once: read whole, with every change.
        many_id, _ = await make_run(store.MAX_REREAD + 2)
        many = await store.read_run_and_steps(many_id)
        assert many is not None
        await StepRun.filter(run_id=many_id).update(reason="all of them")
        again_many = await store.read_run_and_steps(many_id, known=many[1])
        assert again_many is not None
        assert [s.reason for s in again_many[1]] == ["all of them"] * (store.MAX_REREAD + 2)
        assert [s.id for s in again_many[1]] == [s.id for s in many[1]]

        # A short run is read whole: one statement, as cheap as checking versions.
        short_id, _ = await make_run(store.KEEP_FROM - 1)
        short = await store.read_run_and_steps(short_id)
        assert short is not None
        again_short = await store.read_run_and_steps(short_id, known=short[1])
        assert again_short is not None
        assert not any(a is b for a, b in zip(again_short[1], short[1], strict=True))


async def test_a_step_ended_by_another_writer_is_seen_at_the_next_drive(
    database_url: str, tmp_path: Path
) -> None:
    """Another replica ends the step this process holds as waiting: the run goes on."""
    write_pipeline(tmp_path, "gated", GATED)
    async with engine_on(database_url, tmp_path) as core:
        started = await core.engine.start_run(RunRequest("gated", {}, STARTER))
        gate = started.steps[0]

        await waiting_for_approval(core, started.id)
        # Written as another process would: the ORM, no bump of our own.
        moved = await StepRun.filter(id=gate.id, status="waiting_approval").update(status="success")
        assert moved == 1

        await core.engine.drive(started.id)
        final = await core.engine.wait_finished(started.id, timeout=30)
    assert final.status == RunStatus.SUCCESS
    assert [s.status for s in final.steps] == [StepStatus.SUCCESS] * (1 + store.KEEP_FROM)


async def test_a_step_snapshot_follows_every_change_of_its_row(
    database_url: str, tmp_path: Path
) -> None:
    """Snapshots are kept on the row's object by version: each change shows at once."""
    async with engine_on(database_url, tmp_path):
        _, (step, _) = await make_run(2)
        first = step_snapshot(step)
        assert step_snapshot(step) is first  # unchanged: the same snapshot
        async with in_transaction() as conn:
            assert await store.set_step_status(step, "running", ["pending"], conn)
            assert step_snapshot(step).status == StepStatus.RUNNING
            await store.update_step_fields(step, conn, external_url="http://127.0.0.1/b/1")
            assert step_snapshot(step).external_url == "http://127.0.0.1/b/1"
            assert not await store.set_step_status(step, "success", ["pending"], conn)
        assert step_snapshot(step).status == StepStatus.RUNNING  # a lost change shows nothing
        assert first.status == StepStatus.PENDING  # a snapshot given out never changes


GATE_THEN_DEPLOY = """\
name: gate-then-deploy
steps:
  - name: Approve
    approval:
      approvers: [U_A]
  - {name: deploy, run: echo deployed}
"""


async def test_a_step_end_planned_from_kept_rows_sees_a_cancel_written_elsewhere(
    database_url: str, tmp_path: Path
) -> None:
    """The step's end is written from the rows this process kept (no read); another
    replica cancelled the run meanwhile: the end is planned again from what is stored,
    so the run is cancelled and ``deploy`` never starts."""
    write_pipeline(tmp_path, "gate-then-deploy", GATE_THEN_DEPLOY)
    async with engine_on(database_url, tmp_path) as core:
        started = await core.engine.start_run(RunRequest("gate-then-deploy", {}, STARTER))
        gate = started.steps[0]

        await waiting_for_approval(core, started.id)
        # Another replica's cancel, before its drive gets here.
        moved = await Run.filter(id=started.id, cancel_requested_at__isnull=True).update(
            cancel_requested_at=store.now(), cancel_requested_by="U_OTHER"
        )
        assert moved == 1
        assert await core.engine.finish_step(started.id, gate.id, StepOutcome(StepStatus.SUCCESS))
        final = await core.engine.wait_finished(started.id, timeout=30)
    assert final.status == RunStatus.CANCELLED
    deploy = final.steps[1]
    assert deploy.status in (StepStatus.SKIPPED, StepStatus.CANCELLED)
    assert deploy.started_at is None


async def test_every_update_of_a_run_row_bumps_its_version_once(
    database_url: str, tmp_path: Path
) -> None:
    async with engine_on(database_url, tmp_path):
        run_id, _ = await make_run(1)
        run, _ = await store.read_run_and_steps(run_id) or (None, [])
        assert run is not None and run.version == 0

        async def stored_run_version() -> int:
            rows = await Run.filter(id=run_id).values_list("version", flat=True)
            return int(rows[0])  # type: ignore[call-overload]

        async with in_transaction() as conn:  # a compare-and-set of ours
            assert await store.set_run_status(run, "running", ["pending"], conn)
        assert run.version == 1 == await stored_run_version()
        async with in_transaction() as conn:
            assert await store.request_cancel(run, "U1", ["running"], conn)
        assert run.version == 2 == await stored_run_version()
        await store.set_thread(run_id, "C1", "1.2")  # the ORM: the trigger bumps it
        assert await stored_run_version() == 3
        count, _ = await connections.get("default").execute_query(
            "UPDATE run SET reason = 'x' WHERE id = " + str(int(run_id))
        )
        assert count == 1
        assert await stored_run_version() == 4
