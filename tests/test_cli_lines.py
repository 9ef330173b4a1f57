"""Step output as prefixed terminal lines, and the exit code of ``ansflow run`` (pure)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from ansflow.cli_lines import StepLines, clean, render_plain
from ansflow.cli_run import exit_code
from engine.events import RunSnapshot
from engine.state import RunStatus


def shown(chunks: list[tuple[str, str]], max_line: int = 8192) -> str:
    """What the terminal shows for these chunks, each step's output then ended."""
    lines = StepLines(max_line=max_line)
    out = []
    for step, text in chunks:
        out += lines.feed(step, text)
    out += lines.flush_all()
    return render_plain(out)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([("Build", "compiling\n")], "[Build] compiling\n"),
        (
            [("Build", "comp"), ("Build", "iling\nlink"), ("Build", "ing\n")],
            "[Build] compiling\n[Build] linking\n",
        ),
        ([("Build", "no newline at the end")], "[Build] no newline at the end\n"),
        ([("Build", "a\n\nb\n")], "[Build] a\n[Build] \n[Build] b\n"),
        ([("Build", "crlf\r"), ("Build", "\nnext\r\n")], "[Build] crlf\n[Build] next\n"),
        ([("Build", "10%\r50%\r100%\n")], "[Build] 100%\n"),
        (
            [("Build", "bell\x07 nul\x00 tab\tkept \x1b[1mbold\x1b[0m\n")],
            "[Build] bell nul tab\tkept \x1b[1mbold\x1b[0m\n",
        ),
        ([("Build", "")], ""),
        (
            [("Unit tests", "ok 1"), ("Lint", "clean\n"), ("Unit tests", " ok 2\n")],
            "[Lint] clean\n[Unit tests] ok 1 ok 2\n",
        ),
    ],
)
def test_chunks_become_whole_lines_under_their_step(
    chunks: list[tuple[str, str]], expected: str
) -> None:
    assert shown(chunks) == expected


def test_a_line_that_never_ends_is_printed_in_bounded_pieces() -> None:
    lines = StepLines(max_line=4)
    assert lines.feed("s", "abcdefghij") == [("s", "abcd"), ("s", "efgh")]
    assert lines.flush("s") == [("s", "ij")]
    assert lines.flush("s") == []


def test_a_step_is_seen_once_it_printed_anything() -> None:
    lines = StepLines()
    assert "s" not in lines.seen
    lines.feed("s", "partial")
    assert "s" in lines.seen
    assert lines.feed("t", "") == [] and "t" not in lines.seen


def test_clean_keeps_what_follows_the_last_carriage_return() -> None:
    assert clean("one\rtwo\r") == "two"
    assert clean("plain") == "plain"


def run_with(status: RunStatus) -> RunSnapshot:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return RunSnapshot(
        id=1,
        pipeline="p",
        status=status,
        parameters={},
        trigger_type="manual",
        triggered_by="cli:me",
        source="cli",
        channel_id=None,
        thread_ts=None,
        reason=None,
        failed_step=None,
        created_at=at,
        started_at=at,
        finished_at=at,
    )


@pytest.mark.parametrize(
    ("status", "first_signal", "code"),
    [
        (RunStatus.SUCCESS, None, 0),
        (RunStatus.SUCCESS, signal.SIGINT, 0),  # it ended well before the cancel landed
        (RunStatus.FAILED, None, 1),
        (RunStatus.CANCELLED, signal.SIGINT, 130),
        (RunStatus.CANCELLED, signal.SIGTERM, 1),
        (RunStatus.CANCELLED, signal.SIGHUP, 1),
        (RunStatus.CANCELLED, None, 1),  # cancelled from Slack or the API meanwhile
        (RunStatus.FAILED, signal.SIGINT, 1),
    ],
)
def test_exit_codes(status: RunStatus, first_signal: int | None, code: int) -> None:
    assert exit_code(run_with(status), first_signal) == code
