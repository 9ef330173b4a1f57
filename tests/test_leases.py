"""Leases, ownership and take-over: two engines (two replica ids) on one database.

Two cores in one process share the database connection but are separate
replicas as far as the database is concerned (each registers, renews and owns
its work under its own id), so what one may and may not touch of the other's
work is tested without mocking anything. The multi-process tests drive real
``ansflow serve`` processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ansflow.wiring import Core, build_core
from engine.errors import InvalidParameter
from engine.executors.base import StepOutcome
from engine.outcomes import PendingOutcomes
from engine.permissions import Actor
from engine.runner import RunRequest
from engine.signals import decode, encode_cancel, encode_event
from engine.state import RunStatus, StepStatus
from storage.db import close_db, open_db
from storage.leases import (
    claim_lease,
    live_replica_ids,
    register_replica,
    release_lease,
    spend_lease_token,
    take_lease,
)
from storage.models import Lease, Run, StepRun
from tests.helpers import eventually, make_settings, write_pipeline

ADMIN = Actor("U_ADMIN")

LONG = """\
name: long
steps:
  - name: Sleep
    run: echo started; sleep 30
"""

RETRY = """\
name: retry
steps:
  - name: Marked
    run: echo ran >> "$MARKS"; sleep 0.2
    retry_on_restart: true
    env: {MARKS: "%s"}
"""


@pytest.fixture
async def opened(database_url: str) -> AsyncIterator[str]:
    await open_db(database_url)
    yield database_url
    await close_db()


@asynccontextmanager
async def replica(url: str, pipelines: Path, port: int) -> AsyncIterator[Core]:
    settings = make_settings(url, pipelines, ANSFLOW_LEASE_SECONDS="1")
    core = build_core(settings, port=port, adopts=True)
    core.keeper.exclusive = False  # two replicas on one database, even on SQLite here
    await core.start()
    try:
        yield core
    finally:
        await core.stop()


async def step_row(run_id: int) -> StepRun:
    row = await StepRun.filter(run_id=run_id).order_by("position").first()
    assert row is not None
    return row


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- named leases ------------------------------------------------------------------


async def test_a_lease_has_one_holder_until_it_expires_or_is_released(opened: str) -> None:
    assert await take_lease("poller:1", "a", 30)
    assert not await take_lease("poller:1", "b", 30)
    assert await take_lease("poller:1", "a", 30)  # renewing one's own
    await release_lease("poller:1", "a")
    assert await take_lease("poller:1", "b", 30)
    assert not await take_lease("poller:1", "a", 30)
    assert (await Lease.get(name="poller:1")).owner == "b"


async def test_an_expired_lease_goes_to_the_next_replica_with_its_stored_pace(opened: str) -> None:
    first = await claim_lease("outbox:C1", "a", 30, refill_per_second=0.8)
    assert first.won and first.fresh
    assert await spend_lease_token("outbox:C1", "a", 0.001, tokens_left=0.25)
    taken = await eventually(
        lambda: claim_lease("outbox:C1", "b", 30, refill_per_second=0.8), lambda c: c.won, timeout=5
    )
    assert not taken.fresh and taken.tokens is not None
    # What "a" left (0.25), refilled for the short time since: far below a full burst.
    assert 0.25 <= taken.tokens < 1.0
    assert not await spend_lease_token("outbox:C1", "a", 30, tokens_left=1.0)


async def test_a_restart_on_the_same_address_ends_the_earlier_incarnation(opened: str) -> None:
    await register_replica("old", "host1", 10, 3000, 60)
    await register_replica("other", "host1", 11, 3001, 60)
    assert {"old", "other"} <= await live_replica_ids()
    await register_replica("new", "host1", 12, 3000, 60)
    live = await live_replica_ids()
    assert "old" not in live and {"new", "other"} <= live


# ---- ownership and take-over ---------------------------------------------------------


async def test_a_starting_replica_leaves_a_live_replicas_runs_alone(
    opened: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "long", LONG)
    async with replica(opened, pipelines_dir, 4001) as a:
        run = await a.engine.start_run(RunRequest("long", {}, ADMIN))
        step = await eventually(lambda: step_row(run.id), lambda s: s.external_id is not None)
        assert step.owner == a.replica.id
        async with replica(opened, pipelines_dir, 4002) as b:
            assert await b.engine.recover() == 0
            assert await b.keeper.tick() is None
            stored = await step_row(run.id)
            assert stored.status == StepStatus.RUNNING and stored.owner == a.replica.id
            assert alive(int(stored.external_id or 0))
            # A cancel pressed at b reaches the process a runs.
            await b.engine.cancel_run(run.id, ADMIN)
            ended = await a.engine.wait_finished(run.id, timeout=15)
            assert ended.status == RunStatus.CANCELLED
            await eventually(lambda: _async(not alive(int(stored.external_id or 0))), timeout=10)


async def _async(value: bool) -> bool:
    return value


@pytest.mark.parametrize("pid_stored", [True, False], ids=["pid-stored", "pid-never-stored"])
async def test_a_dead_replicas_local_step_fails_interrupted_and_its_process_is_killed(
    opened: str, pipelines_dir: Path, pid_stored: bool
) -> None:
    write_pipeline(pipelines_dir, "long", LONG)
    async with replica(opened, pipelines_dir, 4001) as a:
        run = await a.engine.start_run(RunRequest("long", {}, ADMIN))
        step = await eventually(lambda: step_row(run.id), lambda s: s.external_id is not None)
        pid = int(step.external_id or 0)
        if not pid_stored:
            # A replica stores a step's pid once the step has run a little while; one
            # that died before has left none: the adopter finds the group by its environment.
            await StepRun.filter(id=step.id).update(external_id=None)
        # As if a were gone: it stops renewing, and its engine cannot store the
        # step's end (a dead process stores nothing) while b takes over.
        async with a.engine._locks.hold(run.id), replica(opened, pipelines_dir, 4002) as b:
            a.keeper._stopping = True  # a stops renewing: the lease runs out
            await a.keeper.stop()
            ended = await b.engine.wait_finished(run.id, timeout=15)
            assert ended.status == RunStatus.FAILED
            assert ended.steps[0].reason is not None and "interrupted" in ended.steps[0].reason
            assert (await step_row(run.id)).owner == b.replica.id
            await eventually(lambda: _async(not alive(pid)), timeout=10)


async def test_a_retry_on_restart_step_of_a_dead_replica_runs_again_on_the_adopter(
    opened: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    write_pipeline(pipelines_dir, "retry", RETRY % marks)
    async with replica(opened, pipelines_dir, 4001) as a:
        a.replica.draining = True  # creates the run, starts nothing
        run = await a.engine.start_run(RunRequest("retry", {}, ADMIN))
        assert (await step_row(run.id)).status == StepStatus.PENDING
        async with replica(opened, pipelines_dir, 4002) as b:
            await a.keeper.stop()  # the drained replica hands its run over
            ended = await b.engine.wait_finished(run.id, timeout=15)
            assert ended.status == RunStatus.SUCCESS
            assert (await step_row(run.id)).owner == b.replica.id
            assert marks.read_text() == "ran\n"


async def test_an_outcome_that_could_not_be_stored_is_written_when_the_database_is_back(
    opened: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "long", LONG)
    async with replica(opened, pipelines_dir, 4001) as a:
        run = await a.engine.start_run(RunRequest("long", {}, ADMIN))
        step = await eventually(lambda: step_row(run.id), lambda s: s.external_id is not None)
        a.engine.outcomes.keep(run.id, step.id, StepOutcome(StepStatus.SUCCESS, 0))
        os.killpg(int(step.external_id or 0), signal.SIGKILL)  # its own end loses to the kept one
        assert await a.engine.write_pending_outcomes() == 1
        ended = await a.engine.wait_finished(run.id, timeout=15)
        assert ended.status == RunStatus.SUCCESS
        assert len(a.engine.outcomes) == 0


async def test_a_run_refused_for_bad_input_creates_nothing_and_owns_nothing(
    opened: str, pipelines_dir: Path
) -> None:
    write_pipeline(pipelines_dir, "long", LONG)
    async with replica(opened, pipelines_dir, 4001) as a:
        with pytest.raises(InvalidParameter):
            await a.engine.start_run(RunRequest("long", {"nosuch": "x"}, ADMIN))
        assert await Run.all().count() == 0


# ---- pure parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        (encode_cancel("r1", 5), True),
        (encode_event("r1", 5, "step.finished", 9), True),
        (encode_event("r1", 5, "run.finished", None), True),
        ('{"k": "cancel", "run": 5}', False),
        ('{"k": "event", "run": "5", "t": "x"}', False),
        ('{"k": "event", "run": 5, "t": "x", "step": "9"}', False),
        ('{"k": "other", "run": 5}', False),
        ("not json", False),
        ("[1, 2]", False),
    ],
)
def test_replica_signals_decode_only_well_formed_payloads(payload: str, valid: bool) -> None:
    assert (decode(payload) is not None) is valid


def test_kept_outcomes_are_bounded_and_keep_the_first_outcome_of_a_step() -> None:
    kept = PendingOutcomes(limit=3)
    for step in range(5):
        kept.keep(1, step, StepOutcome(StepStatus.SUCCESS))
    kept.keep(1, 4, StepOutcome(StepStatus.FAILED))
    items = kept.take()
    assert [step for _, step, _ in items] == [2, 3, 4]
    assert items[-1][2].status == StepStatus.SUCCESS
    assert len(kept) == 0
