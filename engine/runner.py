"""The runner: starts runs, carries out what ``plan()`` says, ends steps, recovers.

It is small on purpose: the decisions live in ``engine.plan`` and
``engine.state``; every write is a compare-and-set in ``storage.runs``; every
change is published on the bus inside its transaction (in-tx subscribers) and
after it (after-commit subscribers).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from engine.catalog import PipelineSource
from engine.concurrency import Concurrency
from engine.errors import Conflict, NotAllowed, RunNotFound, ToolNotActive, UnknownTool
from engine.events import (
    CancelRequested,
    Event,
    EventBus,
    RunFinished,
    RunSnapshot,
    RunStarted,
    RunStatusChanged,
    StepFinished,
    StepStarted,
    StepUpdated,
)
from engine.executors.base import Executor, NotSupportedExecutor, StepContext, StepOutcome
from engine.outcomes import PendingOutcomes
from engine.output import tail_of
from engine.params import resolve_parameters
from engine.permissions import Actor, cancel_refusal, run_refusal
from engine.pipelines import JenkinsSpec, Pipeline
from engine.plan import Plan, StepView, plan
from engine.recent import Recent
from engine.replica import ReplicaRef
from engine.rounds import Round, RoundLost, round_of
from engine.runlock import RunLocks
from engine.snapshots import run_snapshot, step_snapshot
from engine.state import RUN_TERMINAL, STEP_ACTIVE, RunStatus, StepStatus, step_status
from engine.transitions import queue_move_run, queue_move_step, request_cancel
from storage import runs as store
from storage.leases import adopt_step
from storage.models import CICDTool, Run, StepRun
from storage.outage import is_database_outage

# A step's end, written first in a round, given the rows read in that round.
Opening = Callable[[Round, Run, list[StepRun]], Awaitable[bool]]

log = logging.getLogger(__name__)

MAX_DRIVE_ROUNDS = 1000
# Statuses :meth:`Engine._drive_locked` plans only after asking the run's concurrency group.
# Ended runs whose pipeline stays validated (their last reads come right after the end).
RECENT_ENDED = 512
# Live runs whose step rows are kept between drives (read again only where changed).
KNOWN_RUNS = 4096
PLANNED_LATER = frozenset({RunStatus.PENDING, RunStatus.QUEUED})


@dataclass(frozen=True)
class RunRequest:
    pipeline: str
    parameters: dict[str, str]
    actor: Actor
    trigger_type: str = "manual"
    source: str = "cli"
    # Where Slack hears of the run; defaults to the pipeline's ``channel``.
    channel_id: str | None = None
    cicd_tool_id: int | None = None
    # Called with the new run's id and connection inside the creating transaction
    # (e.g. to record an Idempotency-Key with the run, or fail and create nothing).
    on_created: Callable[[int, Any], Awaitable[None]] | None = None
    # The run this one repeats (Slack's Rerun button).
    rerun_of: int | None = None


class CancelResult(StrEnum):
    REQUESTED = "requested"
    ALREADY = "already"


@functools.lru_cache(maxsize=4096)
def _stage_of(path: str) -> int:
    return int(path.split(".", 1)[0])


@asynccontextmanager
async def _single_statement() -> AsyncIterator[Any]:
    yield connections.get("default")


class Engine:
    def __init__(
        self,
        *,
        source: PipelineSource,
        bus: EventBus,
        admins: frozenset[str] = frozenset(),
        replica: ReplicaRef | None = None,
    ) -> None:
        self.source = source
        self.bus = bus
        self.admins = admins
        self.replica = replica or ReplicaRef()
        self.outcomes = PendingOutcomes()
        self.executors: dict[str, Executor] = {
            "approval": NotSupportedExecutor("approval", "approval steps are not supported yet"),
            "jenkins": NotSupportedExecutor("jenkins", "jenkins steps are not supported yet"),
        }
        self._locks = RunLocks()
        # Runs whose loaded rows may be out of date (a lost compare-and-set, or a
        # step ended inside the run's own drive): read them again before planning.
        self._stale: set[int] = set()
        # The step rows each live run was last driven with, kept up to date by its
        # compare-and-sets; a drive reads again only those whose version moved.
        # Forgotten when a drive fails (its writes may have rolled back) or the run ends.
        self._known: Recent[int, tuple[Run, list[StepRun]]] = Recent(KNOWN_RUNS)
        # Told of every round that lost its compare-and-set (e.g. a metrics counter).
        self.on_round_lost: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pinned: dict[int, Pipeline] = {}
        self._recent: Recent[int, Pipeline] = Recent(RECENT_ENDED)
        self._finished: dict[int, asyncio.Event] = {}
        self._final: dict[int, RunSnapshot] = {}
        self._idle_hooks: list[Callable[[], Awaitable[None]]] = []
        self.concurrency = Concurrency(self)
        bus.subscribe(self._on_event)

    def register(
        self, executor: Executor, idle: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.executors[executor.kind] = executor
        if idle is not None:
            self._idle_hooks.append(idle)

    def _tx(self) -> AbstractAsyncContextManager[Any]:
        """A transaction when something must commit with the change (outbox rows).

        With no in-transaction subscriber a change is one compare-and-set
        statement, atomic on its own; skipping BEGIN/COMMIT halves its cost.
        """
        if self.bus.has_in_tx():
            return in_transaction()
        return _single_statement()

    # ---- asking -------------------------------------------------------------

    async def start_run(self, request: RunRequest) -> RunSnapshot:
        """Check the request and create the run; raises a ``UserError`` and creates nothing.

        The run's creation and its first round (running, first steps started)
        commit together; a pipeline with a concurrency group asks for its group first.
        """
        pipeline = self.source.get(request.pipeline)
        refusal = run_refusal(pipeline, request.actor, self.admins)
        if refusal:
            raise NotAllowed(refusal)
        parameters = resolve_parameters(pipeline, request.parameters)
        await self._check_tools(pipeline, request.cicd_tool_id)
        # Without a concurrency group to ask, the run is created running (one
        # statement fewer than pending, then running).
        started_at = store.now() if pipeline.concurrency is None else None
        steps_of = [(path, spec.name, spec.kind) for path, spec in pipeline.leaves()]
        fields: dict[str, Any] = {
            "pipeline": pipeline.name,
            "definition": pipeline.model_dump(mode="json"),
            "parameters": parameters,
            "trigger_type": request.trigger_type,
            "triggered_by": request.actor.user_id,
            "source": request.source,
            "channel_id": request.channel_id or pipeline.channel,
            "cicd_tool_id": request.cicd_tool_id,
            "owner": self.replica.id,
            "rerun_of": request.rerun_of,
        }
        # Started at once, with nothing else to commit with it: on PostgreSQL (Slack
        # off) the rows and the first round go as one statement, without a transaction.
        alone = (
            started_at is not None
            and request.on_created is None
            and len(steps_of) <= store.ONE_STATEMENT_STEPS
        )
        async with AsyncExitStack() as held:
            async with round_of(self.bus, alone=alone) as first:
                if alone and first.writes.one_statement:
                    assert started_at is not None
                    run, steps = await store.reserve_run(
                        steps=steps_of, writes=first.writes, started_at=started_at, **fields
                    )
                else:
                    run, steps = await store.create_run(
                        steps=steps_of, conn=first.conn, started_at=started_at, **fields
                    )
                if request.on_created is not None:
                    await request.on_created(run.id, first.conn)
                self._pinned[run.id] = pipeline
                await held.enter_async_context(self._locks.hold(run.id))
                if started_at is not None:
                    await first.announce(self.bus, RunStarted(run=run_snapshot(run, steps)))
                    await self._apply(run, steps, self._plan(run, steps), first)
            await self._committed(run.id, first)
            self._known.put(run.id, (run, steps))
            latest = await self._drive_locked(run.id, (run, steps))
        if latest is None:
            return await self.snapshot(run.id)
        return run_snapshot(*latest)

    async def _check_tools(self, pipeline: Pipeline, tool_id: int | None) -> None:
        names = {
            spec.jenkins.tool for _, spec in pipeline.leaves() if isinstance(spec, JenkinsSpec)
        }
        if tool_id is not None:
            tool = await CICDTool.filter(id=tool_id).first()
            if tool is None:
                raise UnknownTool(str(tool_id))
            if tool.status != "active":
                raise ToolNotActive(tool.name)
        for name in sorted(names):
            tool = await CICDTool.filter(name=name).first()
            if tool is None:
                raise UnknownTool(name)
            if tool.status != "active":
                raise ToolNotActive(name)

    async def cancel_run(self, run_id: int, actor: Actor) -> CancelResult:
        run = await store.read_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        pipeline = self.pinned(run)
        refusal = cancel_refusal(pipeline, run.triggered_by, actor, self.admins)
        if refusal:
            raise NotAllowed(refusal)
        if RunStatus(run.status) in RUN_TERMINAL:
            raise Conflict(
                f"Run {run_id} already ended ({run.status}); there is nothing to cancel."
            )
        async with self._locks.hold(run_id):
            steps = await store.read_steps(run_id)
            async with self._tx() as conn:
                won = await request_cancel(run, actor.user_id, conn)
                event = CancelRequested(run=run_snapshot(run, steps), by=actor.user_id)
                if won:
                    await self.bus.publish_in_tx(event, conn)
            if won:
                self._known.pop(run_id)  # the row held for the run is out of date
                await self.bus.publish(event)
        if not won:
            return CancelResult.ALREADY
        await self.drive(run_id)
        return CancelResult.REQUESTED

    async def snapshot(self, run_id: int) -> RunSnapshot:
        loaded = await store.read_run_and_steps(run_id)
        if loaded is None:
            raise RunNotFound(run_id)
        return run_snapshot(*loaded)

    def pinned(self, run: Run) -> Pipeline:
        """The pipeline as the run was started (its stored definition, validated once)."""
        pipeline = self._pinned.get(run.id) or self._recent.get(run.id)
        if pipeline is None:
            pipeline = Pipeline.model_validate(run.definition)
            if RunStatus(run.status) not in RUN_TERMINAL:
                self._pinned[run.id] = pipeline
            else:
                self._recent.put(run.id, pipeline)
        return pipeline

    # ---- carrying out the plan ---------------------------------------------

    async def drive(self, run_id: int) -> None:
        async with self._locks.hold(run_id) as took:
            if not took:
                return  # the outer drive of this run goes on after us
            await self._drive_locked(run_id, None)

    async def _drive_locked(
        self,
        run_id: int,
        loaded: tuple[Run, list[StepRun]] | None,
        opening: Opening | None = None,
    ) -> tuple[Run, list[StepRun]] | None:
        """Plan and apply until nothing changes. ``loaded`` spares the first read.

        ``opening`` (a step's end) is written in the first round's transaction,
        with what the plan then decides; if it loses, nothing is driven. Without
        ``loaded`` that round reads the rows itself, inside its transaction.

        Returns the rows as they stand at the end (None when they may be stale).
        The objects are updated in place by each won compare-and-set; a lost one,
        or a step ended inside this drive, marks them stale and they are read again.
        """
        try:
            return await self._drive_rounds(run_id, loaded, opening)
        except BaseException:
            self._known.pop(run_id)  # its objects may hold writes that rolled back
            raise

    async def _drive_rounds(
        self,
        run_id: int,
        loaded: tuple[Run, list[StepRun]] | None,
        opening: Opening | None,
    ) -> tuple[Run, list[StepRun]] | None:
        for _ in range(MAX_DRIVE_ROUNDS):
            decided: Plan | None = None
            if opening is None:
                loaded = await self._fresh(run_id, loaded)
                if loaded is None:
                    return None
                decided = await self._decide(*loaded)
                if decided is None:
                    return None if run_id in self._stale else loaded
            changed = False
            try:
                async with round_of(self.bus, alone=True) as now:
                    if opening is None:
                        self._check_held(loaded, now)
                    else:
                        loaded = await self._opening_rows(run_id, loaded, now)
                        if loaded is None or not await opening(now, *loaded):
                            return loaded
                        run, steps = loaded
                        if RunStatus(run.status) not in RUN_TERMINAL | PLANNED_LATER:
                            decided = self._plan(run, steps)
                    if decided is not None:
                        assert loaded is not None
                        changed = await self._apply(*loaded, decided, now)
            except RoundLost:
                # Nothing of it was stored, and the rows held are not what is stored:
                # plan again from the stored ones (the opening, if any, with them).
                self._stale.add(run_id)
                self._known.pop(run_id)
                self._lost()
                loaded = None
                continue
            opening = None
            await self._committed(run_id, now)
            if decided is None:
                continue  # the opening alone: plan from the top (its group, its end)
            if not changed and run_id not in self._stale:
                return loaded
        log.error("run %s: plan did not settle after %s rounds", run_id, MAX_DRIVE_ROUNDS)
        return None

    async def _fresh(
        self, run_id: int, loaded: tuple[Run, list[StepRun]] | None, conn: Any = None
    ) -> tuple[Run, list[StepRun]] | None:
        """``loaded``, or the stored rows when there are none or they are stale.

        Stored rows whose version has not moved since this process last held
        them are not read again (the run's row always is).
        """
        if loaded is not None and run_id not in self._stale:
            return loaded
        self._stale.discard(run_id)
        kept = self._known.get(run_id)
        known = kept[1] if kept is not None else None
        fresh = await store.read_run_and_steps(run_id, conn, known=known)
        if fresh is None or RunStatus(fresh[0].status) in RUN_TERMINAL:
            self._known.pop(run_id)
        else:
            self._known.put(run_id, fresh)
        return fresh

    @staticmethod
    def _check_held(loaded: tuple[Run, list[StepRun]] | None, now: Round) -> None:
        """Planned from rows held, not read in the round's own statement (or
        transaction): the round applies only if they are still as held."""
        if loaded is not None:
            for check in store.unchanged(*loaded):
                now.writes.check(check)

    async def _opening_rows(
        self, run_id: int, loaded: tuple[Run, list[StepRun]] | None, now: Round
    ) -> tuple[Run, list[StepRun]] | None:
        """The rows a step's end is written from: those this process holds, without a
        read (the round then applies only if they are still as held); else
        ``loaded`` or the stored ones, read in ``now``."""
        kept = None if run_id in self._stale else self._known.get(run_id)
        rows = kept or await self._fresh(run_id, loaded, now.conn)
        self._check_held(rows, now)
        return rows

    async def _decide(self, run: Run, steps: list[StepRun]) -> Plan | None:
        """The plan for the run's next round; None when there is nothing to write."""
        if RunStatus(run.status) in RUN_TERMINAL:
            return None
        if not await self.concurrency.may_proceed(run, steps):
            return None  # waits for its concurrency group
        decided = self._plan(run, steps)
        return decided if self._has_work(run, decided) else None

    async def _committed(self, run_id: int, done: Round) -> None:
        try:
            await done.committed(self.bus)
        except BaseException:
            self._stale.add(run_id)
            self._known.pop(run_id)
            raise

    @staticmethod
    def _plan(run: Run, steps: list[StepRun]) -> Plan:
        stages: dict[int, list[StepView]] = {}
        for step in steps:
            stages.setdefault(_stage_of(step.path), []).append(
                StepView(step.path, step_status(step.status))
            )
        return plan(
            [stages[k] for k in sorted(stages)],
            cancel_requested=run.cancel_requested_at is not None,
        )

    @staticmethod
    def _has_work(run: Run, decided: Plan) -> bool:
        """Would :meth:`_apply` write anything? (A settled run costs no transaction.)"""
        if decided.skip or decided.cancel or decided.start or decided.outcome is not None:
            return True
        if run.status in (RunStatus.PENDING, RunStatus.QUEUED):
            return True
        return run.status != decided.run_status

    async def _apply(self, run: Run, steps: list[StepRun], decided: Plan, now: Round) -> bool:
        """Write what ``decided`` asks in ``now``; True when the plan must be redone."""
        by_path = {s.path: s for s in steps}
        changed = False
        if run.status in (RunStatus.PENDING, RunStatus.QUEUED) and decided.outcome is None:
            # A queued run may already have a root message: it moves on, it does not start anew.
            started = RunStarted if run.status == RunStatus.PENDING else RunStatusChanged
            fields = {"started_at": store.now()} if run.started_at is None else {}
            if not await self._set_run(run, steps, RunStatus.RUNNING, started, now, **fields):
                return True  # moved meanwhile (cancelled elsewhere): plan again from what is stored
        for path in decided.skip:
            changed |= await self._end_step(
                run, steps, by_path[path], StepOutcome(StepStatus.SKIPPED), now
            )
        for path in decided.cancel:
            changed |= await self._cancel_step(run, steps, by_path[path], now)
        for path in decided.start:
            changed |= await self._start_step(run, steps, by_path[path], now)
        if decided.outcome is not None:
            await self._finish_run(run, steps, decided.outcome, now)
            now.then(lambda: self.concurrency.release(run))
            return False
        status = run.status
        if not changed and status != decided.run_status and status != RunStatus.PENDING:
            await self._set_run(run, steps, decided.run_status, RunStatusChanged, now)
        return changed

    async def _set_run(
        self,
        run: Run,
        steps: list[StepRun],
        status: RunStatus,
        event_type: type[Event],
        now: Round,
        **fields: Any,
    ) -> bool:
        won = queue_move_run(run, status, now.writes, **fields)
        if won:
            await now.announce(self.bus, event_type(run=run_snapshot(run, steps)))
        else:
            self._stale.add(run.id)
        return won

    async def _finish_run(
        self, run: Run, steps: list[StepRun], outcome: RunStatus, now: Round
    ) -> None:
        fields: dict[str, Any] = {"finished_at": store.now()}
        if run.started_at is None:
            fields["started_at"] = fields["finished_at"]
        if outcome == RunStatus.FAILED:
            failed = next((s for s in steps if s.status == StepStatus.FAILED), None)
            if failed is None:
                failed = next((s for s in steps if s.status == StepStatus.CANCELLED), None)
            if failed is not None:
                fields["failed_step"] = failed.name
                fields["reason"] = failed.reason or f"step {failed.name} failed"
        elif outcome == RunStatus.CANCELLED:
            fields["reason"] = (
                f"cancelled by {run.cancel_requested_by}"
                if run.cancel_requested_by
                else "cancelled"
            )
        await self._set_run(run, steps, outcome, RunFinished, now, **fields)

    async def _start_step(self, run: Run, steps: list[StepRun], step: StepRun, now: Round) -> bool:
        if self.replica.draining:
            return False  # left pending: the replica that adopts the run starts it
        executor = self.executors.get(step.kind)
        if executor is None:
            executor = NotSupportedExecutor(step.kind, f"no executor for {step.kind} steps")
        won = queue_move_step(
            step,
            executor.started_status,
            now.writes,
            expected=[StepStatus.PENDING],
            started_at=store.now(),
            attempt=step.attempt + 1,
            owner=self.replica.id,
        )
        if not won:
            self._stale.add(run.id)  # someone else moved it: re-plan from what is stored
            return True
        await now.announce(
            self.bus, StepStarted(run=run_snapshot(run, steps), step=step_snapshot(step))
        )
        context = self._context(run, step)
        now.then(lambda: executor.start(context))
        return True

    async def _cancel_step(self, run: Run, steps: list[StepRun], step: StepRun, now: Round) -> bool:
        executor = self.executors.get(step.kind)
        if executor is None or step.status == StepStatus.WAITING_APPROVAL:
            return await self._end_step(
                run, steps, step, StepOutcome(StepStatus.CANCELLED, reason="cancelled"), now
            )
        now.then(lambda: self._stop_step(run, step, executor))
        return False

    async def _stop_step(self, run: Run, step: StepRun, executor: Executor) -> None:
        """Stop an active step's work: here, or at the live replica that does it."""
        if not self.replica.is_mine(step.owner):
            if await self.replica.owner_alive(step.owner):
                # Its process (or trigger) lives there: that replica ends it.
                assert step.owner is not None
                await self.replica.signals.cancel(step.owner, run.id)
                return
            if not await adopt_step(step.id, step.owner, self.replica.id):
                self._stale.add(run.id)  # someone else took it meanwhile: plan again
                return
            step.owner = self.replica.id
        await executor.cancel(self._context(run, step))

    async def _end_step(
        self, run: Run, steps: list[StepRun], step: StepRun, outcome: StepOutcome, now: Round
    ) -> bool:
        fields: dict[str, Any] = {"finished_at": store.now()}
        if outcome.exit_code is not None:
            fields["exit_code"] = outcome.exit_code
        if outcome.reason is not None:
            fields["reason"] = outcome.reason
        if outcome.log is not None:
            fields.update(
                log=outcome.log, log_tail=tail_of(outcome.log), log_dropped=outcome.log_dropped
            )
        if outcome.external_url is not None:
            fields["external_url"] = outcome.external_url
        expected = (
            [StepStatus.PENDING] if outcome.status == StepStatus.SKIPPED else list(STEP_ACTIVE)
        )
        won = queue_move_step(step, outcome.status, now.writes, expected=expected, **fields)
        if won:
            await now.announce(
                self.bus, StepFinished(run=run_snapshot(run, steps), step=step_snapshot(step))
            )
        else:
            self._stale.add(run.id)
        return won

    def _context(self, run: Run, step: StepRun) -> StepContext:
        pipeline = self.pinned(run)
        spec = next(s for p, s in pipeline.leaves() if p == step.path)
        run_id, step_id = run.id, step.id

        async def finish(outcome: StepOutcome) -> bool:
            return await self.finish_step(run_id, step_id, outcome)

        async def update(**fields: Any) -> None:
            await self.update_step(run_id, step_id, **fields)

        return StepContext(
            run_id=run.id,
            step_id=step.id,
            step_name=step.name,
            attempt=step.attempt,
            spec=spec,
            pipeline=pipeline,
            parameters=dict(run.parameters),
            triggered_by=run.triggered_by,
            external_id=step.external_id,
            external_url=step.external_url,
            external_state=step.external_state,
            finish=finish,
            update=update,
            run=run_snapshot(run, ()),
        )

    async def finish_step(self, run_id: int, step_id: int, outcome: StepOutcome) -> bool:
        """End an active step (compare-and-set) and move its run on. False if already ended.

        While the database cannot be reached the outcome is kept in memory and
        written once it is back (:class:`PendingOutcomes`); False meanwhile.
        """
        try:
            return await self._finish_step(run_id, step_id, outcome)
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            log.warning(
                "run %s: database unreachable; keeping step %s outcome (%s) until it is back",
                run_id,
                step_id,
                outcome.status.value,
            )
            self.outcomes.keep(run_id, step_id, outcome)
            return False

    async def write_pending_outcomes(self) -> int:
        """Store the outcomes kept during an outage, oldest first. Returns how many."""
        written = 0
        for run_id, step_id, outcome in self.outcomes.take():
            try:
                await self._finish_step(run_id, step_id, outcome)
            except Exception as exc:
                if not is_database_outage(exc):
                    log.exception("run %s: could not store a kept outcome", run_id)
                    continue
                self.outcomes.keep(run_id, step_id, outcome, front=True)
                break
            written += 1
        return written

    async def _finish_step(self, run_id: int, step_id: int, outcome: StepOutcome) -> bool:
        """Store a step's outcome, then drive the run on; False when it lost (moved meanwhile)."""
        ended = False

        async def stored() -> None:
            nonlocal ended
            ended = True

        async def end(now: Round, run: Run, steps: list[StepRun]) -> bool:
            step = next((s for s in steps if s.id == step_id), None)
            if step is None or not await self._end_step(run, steps, step, outcome, now):
                return False
            now.then(stored)  # the first act: once the round has committed
            return True

        async with self._locks.hold(run_id) as took:
            if took:
                # The rows are read inside the step's end's transaction.
                await self._drive_locked(run_id, None, opening=end)
                return ended
            # Inside this run's own drive: end it alone; the drive plans on from the
            # stored rows, since the ones it holds are now out of date.
            try:
                async with round_of(self.bus, alone=True) as alone:
                    loaded = await store.read_run_and_steps(run_id, alone.conn)
                    if loaded is not None:
                        await end(alone, *loaded)
            except RoundLost:
                self._known.pop(run_id)  # the step moved meanwhile: nothing was stored
                self._lost()
            else:
                await self._committed(run_id, alone)
            self._stale.add(run_id)
        return ended

    def forget_rows(self, run_id: int) -> None:
        """The run's row was written outside the engine (e.g. its Slack thread):
        the next step boundary reads it again instead of losing one round."""
        if self._known.pop(run_id) is not None:
            self._stale.add(run_id)  # a drive under way plans from a read, too

    def _lost(self) -> None:
        if self.on_round_lost is not None:
            self.on_round_lost()

    async def update_step(self, run_id: int, step_id: int, **fields: Any) -> None:
        """Store non-status fields of a step; announce those a person would see.

        Seen: a new ``external_url`` (the build link), a new ``reason`` while the
        step runs (e.g. "Jenkins unreachable; retrying", or its clearing).
        """
        # Written outside a round: the rows held for the run are out of date.
        self._known.pop(run_id)
        if "external_url" not in fields and "reason" not in fields:
            await store.write_step_fields(step_id, **fields)
            return
        loaded = await store.read_run_and_steps(run_id)
        if loaded is None:
            return
        run, steps = loaded
        step = next((s for s in steps if s.id == step_id), None)
        if step is None:
            return
        visible = any(
            name in fields and fields[name] != getattr(step, name)
            for name in ("external_url", "reason")
        )
        async with self._tx() as conn:
            await store.update_step_fields(step, conn, **fields)
            event = StepUpdated(run=run_snapshot(run, steps), step=step_snapshot(step))
            if visible:
                await self.bus.publish_in_tx(event, conn)
        if visible:
            await self.bus.publish(event)

    # ---- background work, recovery, waiting --------------------------------

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine task failed")

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self) -> int:
        """Adopt and continue the work of dead replicas (a previous process of ours
        included); never touches the work of live ones. Returns how many items."""
        from engine.takeover import sweep

        if self.replica.connected_since is None:  # starting: dead owners are dead
            self.replica.connected_since = time.monotonic() - self.replica.lease_seconds
        return await sweep(self)

    async def recover_step(self, run_id: int, step_id: int) -> None:
        """Resume or end an active step this replica has just adopted."""
        run = await store.read_run(run_id)
        if run is None:
            return
        step = next((s for s in await store.read_steps(run_id) if s.id == step_id), None)
        if step is None or step.status not in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL):
            return
        executor = self.executors.get(step.kind)
        if executor is None:
            await self.finish_step(
                run_id, step.id, StepOutcome(StepStatus.FAILED, reason="interrupted by restart")
            )
        else:
            await executor.recover(self._context(run, step))

    async def run_until_idle(self, timeout: float = 60.0) -> None:
        """Wait until no engine or executor work is in flight (tests, CLI)."""

        async def settle() -> None:
            for _ in range(10_000):
                if self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
                for hook in self._idle_hooks:
                    await hook()
                await asyncio.sleep(0)
                if not self._tasks:
                    return

        await asyncio.wait_for(settle(), timeout=timeout)

    async def wait_finished(self, run_id: int, timeout: float | None = None) -> RunSnapshot:
        """The run once it has ended (its snapshot at the moment it ended)."""
        event = self._finished.setdefault(run_id, asyncio.Event())
        try:
            snapshot = await self.snapshot(run_id)
            if snapshot.status not in RUN_TERMINAL:
                async with asyncio.timeout(timeout):
                    await event.wait()
                final = self._final.pop(run_id, None)
                snapshot = final if final is not None else await self.snapshot(run_id)
            return snapshot
        finally:
            self._finished.pop(run_id, None)
            self._final.pop(run_id, None)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            waiter = self._finished.get(event.run.id)
            if waiter is not None:
                self._final[event.run.id] = event.run
                waiter.set()
            ended = self._pinned.pop(event.run.id, None)
            if ended is not None:
                self._recent.put(event.run.id, ended)  # a client reads it once more
            self._stale.discard(event.run.id)
            self._known.pop(event.run.id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
