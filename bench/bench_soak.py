"""Two-replica soak on PostgreSQL: ``python -m bench.bench_soak [--runs 200] [--kill-every 10]``.

1. Soak: ``--runs`` mixed runs (shell, parallel, approval approved by a Slack
   click, Jenkins, 12 short steps in a row) created over REST at alternating
   replicas, while one replica is killed (``kill -9``) and restarted every
   ``--kill-every`` seconds. Counts duplicate steps (a local step that ran twice), duplicate
   builds (a Jenkins step with two builds), duplicate Slack messages (an
   outbox row posted twice, a run with two cards), lost runs (not ended when
   the soak is over), the take-over time after a kill (from the kill until a
   local step it was running has moved on: median, max) and Slack's peak per
   channel in any 10 s window.
2. Throughput: runs/s of a two-step shell pipeline with one and with two
   replicas (REST, 8 requests in flight).

Everything is real but Slack and Jenkins: ``ansflow serve`` processes
(tests/replicas.py), a throwaway PostgreSQL, the fakes of tests/fakes as
servers. Bounded: the soak gives up waiting after ``--settle`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bot.views import APPROVE_ACTION_ID
from tests.fakes.slack import FakeSlack, StoredMessage
from tests.helpers import write_pipeline
from tests.jenkins_e2e import TOKEN, USER
from tests.pg_server import ThrowawayPostgres
from tests.replicas import TERMINAL, Replicas, peak_per_channel, posts_per_row, replica_set
from tests.slack_signing import BOB, run_of
from tests.test_crash_restart import MARKED_PARAMS, LateAnswers

KINDS = ("shell", "parallel", "approval", "jenkins", "long")
# Steps of a "long" run: enough that each replica keeps its step rows between drives.
LONG_STEPS = 12
VARIANTS = 5  # pipelines per kind, each posting to its own channel


def channel(kind: str, variant: int) -> str:
    return f"C0SOAK{KINDS.index(kind)}{variant:03d}"


def pipeline(kind: str, variant: int, steps_log: Path) -> str:
    """Each local step first appends ``run:step`` to ``steps_log`` (twice means it ran twice)."""
    mark = f"echo \"$ANSFLOW_RUN_ID:$ANSFLOW_STEP\" >> '{steps_log}'"

    def step(name: str, extra: str = "") -> str:
        return f"{{name: {name}, run: {json.dumps(mark + extra)}}}"

    head = f"name: {kind}-{variant}\nchannel: {channel(kind, variant)}\nsteps:\n"
    if kind == "shell":
        body = f"  - {step('build', '; sleep 3')}\n  - {step('test')}\n"
    elif kind == "parallel":
        body = (
            "  - parallel:\n"
            f"      - {step('left', '; sleep 1.5')}\n"
            f"      - {step('right', '; sleep 1.5')}\n"
            f"  - {step('join')}\n"
        )
    elif kind == "approval":
        body = (
            f"  - {step('build')}\n"
            f"  - {{name: gate, approval: {{approvers: [{BOB}]}}}}\n"
            f"  - {step('deploy')}\n"
        )
    elif kind == "jenkins":
        body = (
            f"  - name: deploy\n    jenkins: {{tool: jenkins, job: marked}}\n  - {step('after')}\n"
        )
    else:
        body = "".join(f"  - {step(f's{i}', '; sleep 0.2')}\n" for i in range(LONG_STEPS))
    return head + body


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@dataclass
class Soak:
    group: Replicas
    created: list[int] = field(default_factory=list)
    extra_creates: int = 0
    kills: int = 0
    take_overs: list[float] = field(default_factory=list)
    clicked: dict[str, float] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # no more kills
    done: asyncio.Event = field(default_factory=asyncio.Event)  # no more clicks
    watchers: list[asyncio.Future[None]] = field(default_factory=list)

    def live(self) -> list[int]:
        return [r.index for r in self.group.replicas if r.alive]

    async def create(self, name: str, prefer: int, key: str) -> None:
        """POST at ``prefer``, else at the other replica, as a balancer retries (same key)."""
        last: object = None
        deadline = time.monotonic() + 30
        attempt = 0
        while time.monotonic() < deadline:
            index = prefer if attempt % 2 == 0 else 1 - prefer
            attempt += 1
            if not self.group[index].alive:
                await asyncio.sleep(0.05)
                continue
            try:
                status, body = await self.group.api(
                    index,
                    "POST",
                    "/api/v1/cicd/executions/",
                    json={"pipeline": name},
                    headers={"Idempotency-Key": key},
                )
            except Exception as exc:  # refused, reset, timed out: a replica killed meanwhile
                last = exc
                await asyncio.sleep(0.1)
                continue
            if status in (200, 201):  # 200: a retry of a create that had reached a replica
                self.created.append(int(body["id"]))
                return
            last = (status, body)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"could not create a run of {name}: {last!r}")

    async def killer(self, every: float) -> None:
        victim = 0
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), every)
                return
            except TimeoutError:
                pass
            running = await self.running_local_steps(self.group[victim].pid)
            await self.group.kill9(victim)
            killed = time.monotonic()
            self.kills += 1
            self.watchers.append(asyncio.ensure_future(self.watch_take_over(running, killed)))
            await self.group.start(victim)
            victim = 1 - victim

    async def running_local_steps(self, service_pid: int) -> list[tuple[int, int]]:
        """Local steps whose process is a child of ``service_pid`` (the replica to be killed)."""
        rows = await self.group.db.fetch(
            "SELECT id, attempt, external_id FROM step_run"
            " WHERE status = 'running' AND kind = 'run'"
        )
        return [
            (int(r["id"]), int(r["attempt"]))
            for r in rows
            if r["external_id"] and parent_of(int(r["external_id"])) == service_pid
        ]

    async def watch_take_over(self, steps: list[tuple[int, int]], killed: float) -> None:
        """Time until each local step the dead replica ran has moved on (ended or rerun)."""
        waiting = dict(steps)
        deadline = killed + 120
        while waiting and time.monotonic() < deadline:
            rows = await self.group.db.fetch(
                "SELECT id, status, attempt FROM step_run WHERE id = ANY($1::int[])",
                list(waiting),
            )
            for row in rows:
                if row["status"] != "running" or int(row["attempt"]) != waiting[int(row["id"])]:
                    self.take_overs.append(time.monotonic() - killed)
                    waiting.pop(int(row["id"]))
            await asyncio.sleep(0.1)

    async def clicker(self) -> None:
        """Approve every gate message Slack shows with its buttons, at a live replica."""
        while not self.done.is_set():
            for message in list(self.gates()):
                last = self.clicked.get(message.ts)
                if last is not None and time.monotonic() - last < 5:
                    continue
                live = self.live()
                if not live:
                    break
                self.clicked[message.ts] = time.monotonic()
                try:
                    await self.group.click(random.choice(live), message, APPROVE_ACTION_ID, BOB)
                except Exception:  # a replica killed mid-request; clicked again later
                    self.clicked[message.ts] = 0.0
            await asyncio.sleep(0.3)

    def gates(self) -> list[StoredMessage]:
        found = []
        for kind_variant in range(VARIANTS):
            for message in self.group.slack.messages(channel("approval", kind_variant)):
                if message.is_reply and APPROVE_ACTION_ID in message.action_ids():
                    found.append(message)
        return found


async def ended(group: Replicas, run_ids: list[int]) -> dict[int, str]:
    rows = await group.db.fetch("SELECT id, status FROM run WHERE id = ANY($1::int[])", run_ids)
    return {int(r["id"]): str(r["status"]) for r in rows}


async def soak(folder: Path, pg: ThrowawayPostgres, runs: int, every: float, settle: float) -> None:
    url = await pg.acreate_database("soak")
    pipelines = folder / "pipelines"
    steps_log = folder / "steps.log"
    for kind in KINDS:
        for variant in range(VARIANTS):
            write_pipeline(pipelines, f"{kind}-{variant}", pipeline(kind, variant, steps_log))
    jenkins = LateAnswers(user=USER, token=TOKEN)
    await jenkins.start()
    jenkins.add_job("marked", params=MARKED_PARAMS)
    jenkins.script("marked", duration=1.0)
    try:
        async with FakeSlack() as slack:
            slack.delay_visibility(0.2)
            async with replica_set(folder, url, pipelines, slack, jenkins=jenkins) as group:
                state = Soak(group)
                began = time.monotonic()
                tasks = [
                    asyncio.ensure_future(state.killer(every)),
                    asyncio.ensure_future(state.clicker()),
                ]
                pace = max(every * 6 / runs, 0.05)  # spread over about six kills
                for i in range(runs):
                    kind = KINDS[i % len(KINDS)]
                    name = f"{kind}-{(i // len(KINDS)) % VARIANTS}"
                    await state.create(name, i % 2, f"soak-{i}")
                    await asyncio.sleep(pace)
                created_in = time.monotonic() - began
                state.stop.set()
                await tasks[0]
                for index in (0, 1):
                    if not group[index].alive:
                        await group.start(index)
                deadline = time.monotonic() + settle
                statuses: dict[int, str] = {}
                while time.monotonic() < deadline:
                    statuses = await ended(group, state.created)
                    if all(s in TERMINAL for s in statuses.values()):
                        break
                    await asyncio.sleep(0.5)
                settled = time.monotonic()
                while time.monotonic() < settled + 60:
                    pending = await group.db.value(
                        "SELECT count(*) FROM outbox_message WHERE state = 'pending'"
                    )
                    if not pending:
                        break
                    await asyncio.sleep(0.5)
                state.done.set()
                await asyncio.gather(tasks[1], *state.watchers, return_exceptions=True)
                await report(group, state, statuses, steps_log, jenkins, created_in, runs)
    finally:
        await jenkins.stop()


async def report(
    group: Replicas,
    state: Soak,
    statuses: dict[int, str],
    steps_log: Path,
    jenkins: LateAnswers,
    created_in: float,
    runs: int,
) -> None:
    outcomes = Counter(statuses.values())
    lost = sum(1 for s in statuses.values() if s not in TERMINAL)
    interrupted = int(
        await group.db.value("SELECT count(*) FROM step_run WHERE reason LIKE '%interrupted%'")
    )
    lines = steps_log.read_text().splitlines() if steps_log.exists() else []
    dup_steps = sum(n - 1 for n in Counter(lines).values() if n > 1)
    with jenkins.state.lock:
        jenkins.state.advance()
        builds = list(jenkins.state.job("marked").builds.values())
        queued = [i for i in jenkins.state.queue.values() if i.job == "marked" and i.waiting]
    per_step = Counter(
        "-".join(b.params.get("ANSFLOW_RUN_STEP", "?").split("-")[:2]) for b in builds
    )
    dup_builds = sum(n - 1 for n in per_step.values() if n > 1) + len(queued)
    slack = group.slack
    dup_rows = sum(n - 1 for n in posts_per_row(slack).values() if n > 1)
    cards = Counter(
        run_of(m)
        for kind in KINDS
        for v in range(VARIANTS)
        for m in slack.messages(channel(kind, v))
        if not m.is_reply
    )
    dup_cards = sum(n - 1 for n in cards.values() if n > 1)
    peaks = peak_per_channel(slack)
    total_runs = int(await group.db.value("SELECT count(*) FROM run"))
    takes = sorted(state.take_overs)
    print(
        f"soak: {runs} runs ({', '.join(KINDS)}) created in {created_in:.0f} s across two "
        f"replicas, {state.kills} kill -9 + restart"
    )
    print(
        f"  outcomes: {dict(outcomes)}; steps failed 'interrupted': {interrupted}; "
        f"runs in the database: {total_runs} (asked for {runs})"
    )
    print(f"  lost runs (not ended): {lost}")
    print(f"  duplicate steps: {dup_steps}")
    print(f"  duplicate builds: {dup_builds} ({len(builds)} builds, {len(per_step)} steps)")
    print(f"  duplicate Slack messages: {dup_rows} rows posted twice, {dup_cards} extra cards")
    if takes:
        print(
            f"  take-over after kill -9: median {statistics.median(takes):.1f} s, "
            f"max {takes[-1]:.1f} s ({len(takes)} steps of killed replicas)"
        )
    print(f"  Slack peak per channel in any 10 s: {max(peaks.values(), default=0)} (limit 10)")


async def throughput(folder: Path, pg: ThrowawayPostgres, replicas: int, runs: int) -> float:
    name = f"tput{replicas}"
    url = await pg.acreate_database(name)
    pipelines = folder / "pipelines"
    write_pipeline(
        pipelines,
        "quick",
        "name: quick\nsteps:\n  - {name: a, run: 'true'}\n  - {name: b, run: 'true'}\n",
    )
    async with (
        FakeSlack() as slack,
        replica_set(folder, url, pipelines, slack, count=replicas) as group,
    ):
        ids: list[int] = []
        began = time.monotonic()
        semaphore = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with semaphore:
                ids.append(await group.create_run(i % replicas, "quick"))

        await asyncio.gather(*(one(i) for i in range(runs)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = await ended(group, ids)
            if len(statuses) == runs and all(s in TERMINAL for s in statuses.values()):
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - began
    return runs / took


async def run_all(runs: int, every: float, settle: float, tput_runs: int) -> None:
    logging.disable(logging.WARNING)
    pg = ThrowawayPostgres()
    await asyncio.to_thread(pg.start)
    try:
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder)
            (base / "soak").mkdir()
            await soak(base / "soak", pg, runs, every, settle)
            rates = []
            for count in (1, 2):
                (base / f"t{count}").mkdir()
                rates.append(await throughput(base / f"t{count}", pg, count, tput_runs))
            print(
                f"throughput on PostgreSQL ({tput_runs} two-step shell runs, 8 in flight): "
                f"1 replica {rates[0]:.1f} runs/s, 2 replicas {rates[1]:.1f} runs/s"
            )
    finally:
        await asyncio.to_thread(pg.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_soak")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=120.0, help="wait at most this long")
    parser.add_argument("--throughput-runs", type=int, default=100)
    opts = parser.parse_args(argv)
    asyncio.run(run_all(opts.runs, opts.kill_every, opts.settle, opts.throughput_runs))


if __name__ == "__main__":
    main()
