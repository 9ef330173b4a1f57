"""A round's compare-and-sets go together as it ends, and a lost one loses the round whole.

What a user relies on: a step boundary either happens entirely (the step's
end, the next step's start, what the Slack outbox and the other replicas are
told) or not at all, and then the engine plans again from what is stored. On
PostgreSQL the round's writes and its notice are one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.events import Event, EventBus, RunStarted
from engine.rounds import RoundLost, round_of
from engine.snapshots import run_snapshot
from engine.state import StepStatus
from engine.transitions import queue_move_step
from storage import runs as store
from storage.db import connect_options
from storage.models import Run, SeenEvent, StepRun
from storage.notify import notify, notify_all
from tests.engine_harness import engine_on
from tests.helpers import eventually
from tests.test_step_versions import make_run


async def stored(step_id: int) -> tuple[str, int]:
    row = await StepRun.get(id=step_id)
    return row.status, row.version


async def test_a_rounds_changes_are_stored_together_in_order(
    database_url: str, tmp_path: Path
) -> None:
    async with engine_on(database_url, tmp_path):
        _, (first, second, third) = await make_run(3)
        async with round_of(EventBus()) as now:
            assert queue_move_step(first, StepStatus.RUNNING, now.writes)
            assert queue_move_step(second, StepStatus.RUNNING, now.writes)
            # The same row once more in the round: sent after the first change of it.
            assert queue_move_step(first, StepStatus.SUCCESS, now.writes)
            assert (await stored(first.id))[0] == "pending"  # nothing sent yet
        assert await stored(first.id) == ("success", 2)
        assert await stored(second.id) == ("running", 1)
        assert await stored(third.id) == ("pending", 0)
        assert (first.status, first.version) == ("success", 2)


async def test_a_held_row_that_cannot_move_is_not_queued(database_url: str, tmp_path: Path) -> None:
    async with engine_on(database_url, tmp_path):
        _, (step, _) = await make_run(2)
        async with round_of(EventBus()) as now:
            assert not queue_move_step(step, StepStatus.SUCCESS, now.writes)  # pending
            assert now.writes.changes == []


async def test_the_outbox_sees_the_rounds_writes_and_a_lost_round_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    async with engine_on(database_url, tmp_path):
        run_id, (first, second) = await make_run(2)
        loaded = await store.read_run_and_steps(run_id)
        assert loaded is not None
        bus = EventBus()
        seen: list[str] = []

        async def outbox(event: Event, conn: Any) -> None:  # as Slack's: reads, then writes
            row = await StepRun.get(id=first.id).using_db(conn)
            seen.append(row.status)
            await SeenEvent.create(event_id=f"outbox-{len(seen)}", using_db=conn)

        bus.subscribe_in_tx(outbox)
        async with round_of(bus) as now:
            assert queue_move_step(first, StepStatus.RUNNING, now.writes)
            await now.announce(bus, RunStarted(run=run_snapshot(*loaded)))
        assert seen == ["running"]  # the round's change, inside the round

        # Another writer (another replica, say) moves the second step meanwhile.
        await StepRun.filter(id=second.id).update(status="skipped")
        acted: list[str] = []

        async def act() -> None:
            acted.append("started")

        with pytest.raises(RoundLost):
            async with round_of(bus) as now:
                assert queue_move_step(first, StepStatus.SUCCESS, now.writes)
                assert queue_move_step(second, StepStatus.RUNNING, now.writes)  # held: pending
                await now.announce(bus, RunStarted(run=run_snapshot(*loaded)))
                now.then(act)
        assert await stored(first.id) == ("running", 1)  # won, and rolled back with the rest
        assert await stored(second.id) == ("skipped", 1)
        assert seen == ["running"] and await SeenEvent.all().count() == 1
        assert acted == []


@pytest.mark.postgres
async def test_notices_go_with_the_rounds_statement_and_only_if_it_commits(
    pg_url: str, tmp_path: Path
) -> None:
    async with engine_on(pg_url, tmp_path):
        listener = await asyncpg.connect(**connect_options(pg_url))
        heard: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener("t_round", lambda *args: heard.put_nowait(args[3]))
        try:
            _, (first, second) = await make_run(2)
            async with round_of(EventBus()) as now:
                assert queue_move_step(first, StepStatus.RUNNING, now.writes)
                await notify_all("t_round", ["one", "two"], now.conn)
                assert now.writes.notices == [("t_round", "one"), ("t_round", "two")]
            assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == ["one", "two"]

            await StepRun.filter(id=second.id).update(status="skipped")
            with pytest.raises(RoundLost):
                async with round_of(EventBus()) as now:
                    assert queue_move_step(second, StepStatus.RUNNING, now.writes)
                    await notify_all("t_round", ["lost"], now.conn)
            # A notice sent after the lost one's would arrive after it: only this one comes.
            await heard_nothing_more(heard, "t_round")
        finally:
            await listener.close()


# ---- rounds without a transaction of their own (PostgreSQL, no outbox) ---------------


@contextlib.asynccontextmanager
async def hearing(pg_url: str, channel: str) -> AsyncIterator[asyncio.Queue[str]]:
    """What another replica's listener hears on ``channel``, in order."""
    listener = await asyncpg.connect(**connect_options(pg_url))
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(channel, lambda *args: heard.put_nowait(args[3]))
    try:
        yield heard
    finally:
        await listener.close()


async def loses_after_waiting_for(
    pg_url: str, writing: tuple[str, int], the_round: Callable[[], Awaitable[None]]
) -> None:
    """``writing`` is done by another replica's transaction, still open as ``the_round``
    is sent: the round waits for its lock, then sees its change, and loses."""
    other = await asyncpg.connect(**connect_options(pg_url))
    try:
        writer = other.transaction()
        await writer.start()
        await other.execute(*writing)
        sent = asyncio.create_task(the_round())
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        await eventually(lambda: other.fetchval(waiting), lambda count: count >= 1)
        assert not sent.done()
        await writer.commit()
        with pytest.raises(RoundLost):
            await asyncio.wait_for(sent, 10)
    finally:
        await other.close()


async def heard_nothing_more(heard: asyncio.Queue[str], channel: str) -> None:
    """Nothing else was told on ``channel``: a notice sent now is the next one heard."""
    await notify(channel, "after")
    assert await asyncio.wait_for(heard.get(), 5) == "after"


@pytest.mark.postgres
async def test_a_round_alone_stores_its_changes_and_notices_in_one_statement(
    pg_url: str, tmp_path: Path
) -> None:
    async with engine_on(pg_url, tmp_path), hearing(pg_url, "t_alone") as heard:
        _, (first, second, third) = await make_run(3)
        async with round_of(EventBus(), alone=True) as now:
            assert queue_move_step(first, StepStatus.RUNNING, now.writes)
            assert queue_move_step(second, StepStatus.RUNNING, now.writes)
            await notify_all("t_alone", ["one", "two"], now.conn)
        assert await stored(first.id) == ("running", 1)
        assert await stored(second.id) == ("running", 1)
        assert await stored(third.id) == ("pending", 0)
        assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == ["one", "two"]


@pytest.mark.postgres
async def test_a_lost_change_in_a_round_alone_stores_nothing_and_tells_no_one(
    pg_url: str, tmp_path: Path
) -> None:
    async with engine_on(pg_url, tmp_path), hearing(pg_url, "t_alone") as heard:
        _, (first, second) = await make_run(2)
        await StepRun.filter(id=second.id).update(status="skipped")  # another writer
        acted: list[str] = []

        async def act() -> None:
            acted.append("started")

        with pytest.raises(RoundLost):
            async with round_of(EventBus(), alone=True) as now:
                assert queue_move_step(first, StepStatus.RUNNING, now.writes)  # would win
                assert queue_move_step(second, StepStatus.RUNNING, now.writes)  # held: pending
                await notify_all("t_alone", ["lost"], now.conn)
                now.then(act)
        assert await stored(first.id) == ("pending", 0)  # not stored: the round lost whole
        assert await stored(second.id) == ("skipped", 1)
        assert acted == []
        await heard_nothing_more(heard, "t_alone")


@pytest.mark.postgres
async def test_a_round_alone_waits_for_a_writer_holding_its_row_and_sees_its_change(
    pg_url: str, tmp_path: Path
) -> None:
    """The row is moved by a transaction still open when the round is sent: the round
    waits for it, then finds the row as it was committed, and loses whole."""
    async with engine_on(pg_url, tmp_path):
        _, (first, second) = await make_run(2)

        async def the_round() -> None:
            async with round_of(EventBus(), alone=True) as now:
                assert queue_move_step(first, StepStatus.RUNNING, now.writes)
                assert queue_move_step(second, StepStatus.RUNNING, now.writes)

        writing = "UPDATE step_run SET status = 'skipped' WHERE id = $1"
        await loses_after_waiting_for(pg_url, (writing, second.id), the_round)
        assert await stored(first.id) == ("pending", 0)
        assert await stored(second.id) == ("skipped", 1)


@pytest.mark.postgres
async def test_a_round_alone_that_needs_two_statements_commits_them_together(
    pg_url: str, tmp_path: Path
) -> None:
    async with engine_on(pg_url, tmp_path):
        _, (first, _) = await make_run(2)
        async with round_of(EventBus(), alone=True) as now:
            assert queue_move_step(first, StepStatus.RUNNING, now.writes)
            assert queue_move_step(first, StepStatus.SUCCESS, now.writes)  # the row again
        assert await stored(first.id) == ("success", 2)

        # The second statement loses: the first, already sent, is rolled back with it.
        _, (one, two) = await make_run(2)
        await StepRun.filter(id=two.id).update(status="skipped")  # another writer
        with pytest.raises(RoundLost):
            async with round_of(EventBus(), alone=True) as now:
                assert queue_move_step(one, StepStatus.RUNNING, now.writes)
                assert queue_move_step(one, StepStatus.SUCCESS, now.writes)
                assert queue_move_step(two, StepStatus.RUNNING, now.writes)  # held: pending
        assert await stored(one.id) == ("pending", 0)
        assert await stored(two.id) == ("skipped", 1)


@pytest.mark.postgres
async def test_a_round_alone_with_an_outbox_keeps_its_transaction(
    pg_url: str, tmp_path: Path
) -> None:
    """The outbox's rows must commit with the change: an outbox that fails after
    writing takes the round's change with it."""
    async with engine_on(pg_url, tmp_path):
        run_id, (first, _) = await make_run(2)
        loaded = await store.read_run_and_steps(run_id)
        assert loaded is not None
        bus = EventBus()

        async def outbox(event: Event, conn: Any) -> None:
            await SeenEvent.create(event_id="outbox-row", using_db=conn)
            raise RuntimeError("the outbox failed")

        bus.subscribe_in_tx(outbox)
        with pytest.raises(RuntimeError):
            async with round_of(bus, alone=True) as now:
                assert queue_move_step(first, StepStatus.RUNNING, now.writes)
                await now.announce(bus, RunStarted(run=run_snapshot(*loaded)))
        assert await stored(first.id) == ("pending", 0)
        assert await SeenEvent.all().count() == 0


async def record(acted: list[str]) -> None:
    acted.append("started")


async def held_rows(run_id: int) -> tuple[Any, list[StepRun]]:
    loaded = await store.read_run_and_steps(run_id)
    assert loaded is not None
    return loaded


@pytest.mark.postgres
async def test_a_round_planned_from_held_rows_applies_only_if_they_are_unchanged(
    pg_url: str, tmp_path: Path
) -> None:
    """The run's row or any of its steps moved since they were held: nothing is stored,
    nothing told or done; unmoved, the round applies (in one statement, or two)."""
    async with engine_on(pg_url, tmp_path), hearing(pg_url, "t_held") as heard:
        run_id, _ = await make_run(3)
        run, (first, second, _) = await held_rows(run_id)
        async with round_of(EventBus(), alone=True) as now:
            assert now.writes.one_statement
            for check in store.unchanged(run, [first, second, _]):
                now.writes.check(check)
            assert queue_move_step(first, StepStatus.RUNNING, now.writes)
        assert await stored(first.id) == ("running", 1)

        for elsewhere in (
            # another replica's cancel (the run's row), the ORM on a step not in the round
            "UPDATE run SET cancel_requested_by = 'U_OTHER' WHERE id = $1",
            "UPDATE step_run SET reason = 'noted' WHERE run_id = $1 AND position = 2",
        ):
            run, steps = await held_rows(run_id)
            other = await asyncpg.connect(**connect_options(pg_url))
            try:
                await other.execute(elsewhere, run_id)
            finally:
                await other.close()
            acted: list[str] = []
            for twice in (False, True):  # one statement; a row changed twice: two
                with pytest.raises(RoundLost):
                    async with round_of(EventBus(), alone=True) as now:
                        for check in store.unchanged(run, steps):
                            now.writes.check(check)
                        before = (steps[1].status, steps[1].version)
                        assert queue_move_step(steps[1], StepStatus.RUNNING, now.writes)
                        if twice:
                            assert queue_move_step(steps[1], StepStatus.SUCCESS, now.writes)
                        await notify_all("t_held", ["lost"], now.conn)
                        now.then(functools.partial(record, acted))
                steps[1].status, steps[1].version = before
                assert await stored(second.id) == ("pending", 0)
            assert acted == []
        await heard_nothing_more(heard, "t_held")


@pytest.mark.postgres
async def test_a_round_from_held_rows_holds_the_runs_row_until_it_commits(
    pg_url: str, tmp_path: Path
) -> None:
    """A cancel written meanwhile by another replica either comes before the round (which
    then loses) or waits for it; it never slips between the check and the change."""
    async with engine_on(pg_url, tmp_path):
        run_id, _ = await make_run(2)
        run, steps = await held_rows(run_id)

        async def the_round() -> None:
            async with round_of(EventBus(), alone=True) as now:
                for check in store.unchanged(run, steps):
                    now.writes.check(check)
                assert queue_move_step(steps[0], StepStatus.RUNNING, now.writes)

        writing = "UPDATE run SET cancel_requested_by = 'U_OTHER' WHERE id = $1"
        await loses_after_waiting_for(pg_url, (writing, run_id), the_round)
        assert await stored(steps[0].id) == ("pending", 0)


async def test_a_round_in_a_transaction_planned_from_held_rows_checks_them_first(
    database_url: str, tmp_path: Path
) -> None:
    """The same promise where the round keeps a transaction (SQLite; PostgreSQL with
    the Slack outbox): the checks go first in it."""
    async with engine_on(database_url, tmp_path):
        run_id, _ = await make_run(2)
        run, steps = await held_rows(run_id)
        async with round_of(EventBus()) as now:
            for check in store.unchanged(run, steps):
                now.writes.check(check)
            assert queue_move_step(steps[0], StepStatus.RUNNING, now.writes)
        assert await stored(steps[0].id) == ("running", 1)

        for elsewhere in (
            Run.filter(id=run_id).update(cancel_requested_by="U_OTHER"),
            StepRun.filter(id=steps[0].id).update(reason="noted"),
        ):
            run, steps = await held_rows(run_id)
            await elsewhere
            with pytest.raises(RoundLost):
                async with round_of(EventBus()) as now:
                    for check in store.unchanged(run, steps):
                        now.writes.check(check)
                    assert queue_move_step(steps[1], StepStatus.RUNNING, now.writes)
            assert await stored(steps[1].id) == ("pending", 0)
