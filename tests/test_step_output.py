"""Step output: UTF-8 across reads, masking of half-printed secrets, what ignores log events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from tortoise.transactions import in_transaction

from ansflow.metrics import Metrics
from bot.outbox import write_outbox
from engine.events import RunSnapshot, StepLog
from engine.masking import Masker
from engine.output import LiveLog
from engine.state import RunStatus
from storage.models import OutboxMessage, StepRun
from tests.engine_harness import Recorder, engine_on, run_to_end
from tests.helpers import write_pipeline

# Writes 300,000 euro signs (3 bytes each) in pieces whose ends fall inside characters.
EUROS = (
    "import os, sys\n"
    "data = ('\\u20ac' * 300000).encode()\n"
    "for i in range(0, len(data), 4097):\n"
    "    os.write(1, data[i:i + 4097])\n"
)


async def test_multibyte_characters_split_across_reads_stay_whole(
    sqlite_url: str, pipelines_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "euros.py"
    script.write_text(EUROS, encoding="utf-8")
    write_pipeline(
        pipelines_dir, "euros", f"name: euros\nsteps:\n  - name: print\n    run: python3 {script}\n"
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "euros")
        step = await StepRun.get(run_id=run.id)
    assert run.status == RunStatus.SUCCESS
    assert step.log.count("\ufffd") == 0
    assert step.log == "€" * 300_000


async def test_invalid_bytes_still_become_replacement_characters(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir, "bad", "name: bad\nsteps:\n  - name: print\n    run: printf 'a\\377b\\342'\n"
    )
    async with engine_on(sqlite_url, pipelines_dir) as core:
        run = await run_to_end(core, "bad")
        step = await StepRun.get(run_id=run.id)
    assert step.log == "a\ufffdb\ufffd"


def test_held_back_is_the_longest_end_that_starts_a_secret() -> None:
    masker = Masker(["s3cr3t-value", "abcd"])
    assert masker.held_back("output s3cr3t-") == len("s3cr3t-")
    assert masker.held_back("output abc") == 3
    assert masker.held_back("output a") == 1
    assert masker.held_back("output s3cr3t-value") == 0  # whole: masked, nothing to hold
    assert masker.held_back("output x") == 0
    assert Masker([]).held_back("anything") == 0


async def test_live_log_writes_rarely_and_publishes_batches() -> None:
    writes: list[str] = []
    batches: list[tuple[str, ...]] = []

    async def write(text: str, tail: str, dropped: int) -> None:
        writes.append(text)

    async def publish(lines: tuple[str, ...]) -> None:
        batches.append(lines)

    live = LiveLog(Masker(["topsecret"]), write=write, publish=publish)
    for i in range(1000):
        live.append(f"line {i} topsecret\n")  # many small chunks, as a busy step gives
    live.append("no newline yet")
    await asyncio.sleep(0.3)
    assert writes == []  # under the size threshold and within a second: nothing written yet
    assert batches and all("topsecret" not in line for b in batches for line in b)
    await live.close()
    shown = [line for b in batches for line in b]
    assert shown[-1] == "no newline yet"
    assert "line 999 ***" in shown
    assert shown[0].startswith("[") and "not shown live" in shown[0]


async def test_live_log_writes_within_about_a_second() -> None:
    writes: list[str] = []

    async def write(text: str, tail: str, dropped: int) -> None:
        writes.append(text)

    live = LiveLog(Masker([]), write=write)
    live.append("hello\n")
    for _ in range(100):
        if writes:
            break
        await asyncio.sleep(0.05)
    await live.close()
    assert writes == ["hello\n"]


def _run_view() -> RunSnapshot:
    return RunSnapshot(
        id=1, pipeline="p", status=RunStatus.RUNNING, parameters={}, trigger_type="manual",
        triggered_by="U1", source="slack", channel_id="C1", thread_ts=None, reason=None,
        failed_step=None, created_at=datetime.now(UTC), started_at=None, finished_at=None,
    )  # fmt: skip


async def test_log_events_make_no_slack_message_and_no_metric(db: str) -> None:
    event = StepLog(run=_run_view(), step_id=1, step_name="s", lines=("hello",))
    async with in_transaction() as conn:
        await write_outbox(event, conn)
    assert await OutboxMessage.all().count() == 0
    metrics = Metrics()
    metrics.on_event(event)
    counted = [s for m in metrics.registry.collect() for s in m.samples]
    sampled = [s for s in counted if s.value and not s.name.endswith("_created")]
    assert sampled == []


async def test_a_run_that_prints_publishes_its_lines_once_each(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir, "two", "name: two\nsteps:\n  - name: a\n    run: printf 'x\\ny'\n"
        "  - name: b\n    run: 'true'\n",
    )  # fmt: skip
    async with engine_on(sqlite_url, pipelines_dir) as core:
        recorder = Recorder(core)
        await run_to_end(core, "two")
    logs = [e for e in recorder.events if isinstance(e, StepLog)]
    assert [(e.step_name, e.lines) for e in logs] == [("a", ("x", "y"))]
    # Published after the lines were read, before the step ended.
    types = recorder.types()
    assert types.index("step.log") < types.index("step.finished")
