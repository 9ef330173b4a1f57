"""A step's output: kept up to a bound, and visible while the step runs.

:class:`BoundedLog` keeps the end of what a step printed. :class:`LiveLog`
adds what a running step needs so that anyone can read its output so far:

* the masked output is written into the step's row now and then (at most
  ``FLUSH_EVERY`` seconds after the first unwritten output, sooner once
  ``FLUSH_CHARS`` are unwritten, never more often than ``FLUSH_MIN_GAP``),
  so every replica serves it from the database; never per chunk, so a step
  that prints little and ends fast costs no write at all;
* complete lines are handed to ``publish`` in batches (at most one batch every
  ``BATCH_EVERY`` seconds, ``MAX_BATCH_LINES`` lines and ``MAX_BATCH_CHARS``
  characters each); lines beyond that are dropped and a marker line says how
  many, so a chatty step never makes anything grow without bound.

Output is masked before it leaves: the end of the text that could be the start
of a secret is held back until more output shows whether it is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine.masking import Masker

log = logging.getLogger(__name__)

LOG_LIMIT = 1_000_000  # characters of output kept per step (the end of it)
TAIL_LINES = 40
TAIL_CHARS = 2800

FLUSH_EVERY = 1.0
FLUSH_CHARS = 64 * 1024
FLUSH_MIN_GAP = 0.25
BATCH_EVERY = 0.2
MAX_BATCH_LINES = 200
MAX_BATCH_CHARS = 32 * 1024
MAX_LINE_CHARS = 2000

# (log so far, its tail, characters dropped from its start)
Writer = Callable[[str, str, int], Awaitable[None]]
Publisher = Callable[[tuple[str, ...]], Awaitable[None]]


@dataclass
class BoundedLog:
    """Keeps the last ``limit`` characters and counts what it dropped."""

    limit: int = LOG_LIMIT
    parts: list[str] = field(default_factory=list)
    size: int = 0
    dropped: int = 0

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.limit * 2:
            self._compact()

    def _compact(self) -> None:
        joined = "".join(self.parts)
        excess = max(0, len(joined) - self.limit)
        self.dropped += excess
        self.parts = [joined[excess:]]
        self.size = len(self.parts[0])

    def text(self) -> str:
        self._compact()
        return "".join(self.parts)


def tail_of(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-chars:]


def skipped_marker(count: int) -> str:
    return f"[{count} line(s) not shown live; the step's log has them]"


class LiveLog:
    """The output of one running step (see the module's docstring)."""

    def __init__(
        self,
        masker: Masker,
        *,
        write: Writer | None = None,
        publish: Publisher | None = None,
        limit: int = LOG_LIMIT,
    ) -> None:
        self.output = BoundedLog(limit)
        self._mask = masker
        self._write = write
        self._publish = publish
        self._unwritten = 0
        self._first_unwritten = 0.0
        self._last_write = 0.0
        self._last_batch = 0.0
        self._partial = ""
        self._lines: deque[str] = deque()
        self._pending_chars = 0
        self._skipped = 0
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._write_failed = False
        self._closing = False
        self.writes = 0

    # -- fed by the reader ------------------------------------------------------

    def append(self, text: str) -> None:
        if not text:
            return
        self.output.append(text)
        if self._write is not None:
            if not self._unwritten:
                self._first_unwritten = time.monotonic()
            before = self._unwritten
            self._unwritten += len(text)
            if before < FLUSH_CHARS <= self._unwritten:
                self._wake.set()
        if self._publish is not None:
            self._collect(text)
        if self._pump is None and (self._write is not None or self._publish is not None):
            self._pump = asyncio.create_task(self._run(), name="live-log")

    def _collect(self, text: str) -> None:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        for line in parts:
            self._add_line(line)
        if len(self._partial) > MAX_LINE_CHARS:  # a very long line: shown cut, in pieces
            self._add_line(self._partial)
            self._partial = ""

    def _add_line(self, line: str) -> None:
        if len(line) > MAX_LINE_CHARS:
            line = line[: MAX_LINE_CHARS - 1] + "…"
        self._lines.append(line)
        self._pending_chars += len(line) + 1
        while len(self._lines) > MAX_BATCH_LINES - 1 or self._pending_chars > MAX_BATCH_CHARS:
            self._pending_chars -= len(self._lines.popleft()) + 1
            self._skipped += 1

    # -- read by anyone in this process ------------------------------------------

    def visible(self) -> str:
        """The masked output so far, less an end that may be the start of a secret."""
        raw = self.output.text()
        held = self._mask.held_back(raw)
        return self._mask(raw[: len(raw) - held] if held else raw)

    # -- the pump ------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            woke = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_EVERY):
                    await self._wake.wait()
                woke = True
            self._wake.clear()
            if self._closing:
                return
            now = time.monotonic()
            if not woke or now - self._last_batch >= BATCH_EVERY:
                await self._send_batch(final=False)
            await self._maybe_write(now)

    async def _send_batch(self, *, final: bool) -> None:
        if self._publish is None:
            return
        if final and self._partial:
            self._add_line(self._partial)
            self._partial = ""
        if not self._lines and not self._skipped:
            return
        lines = list(self._lines)
        if self._skipped:
            lines.insert(0, skipped_marker(self._skipped))
        self._lines.clear()
        self._pending_chars = 0
        self._skipped = 0
        self._last_batch = time.monotonic()
        masked = self._mask("\n".join(lines))
        try:
            await self._publish(tuple(masked.split("\n")))
        except Exception:  # a subscriber's bug must not stop the step
            log.exception("publishing a step's output failed")

    async def _maybe_write(self, now: float) -> None:
        if self._write is None or not self._unwritten:
            return
        due = now - self._first_unwritten >= FLUSH_EVERY or (
            self._unwritten >= FLUSH_CHARS and now - self._last_write >= FLUSH_MIN_GAP
        )
        if not due:
            return
        self._unwritten = 0
        self._last_write = now
        text = self.visible()
        try:
            await self._write(text, tail_of(text), self.output.dropped)
        except Exception as exc:  # the database may be down: the end result still counts
            if not self._write_failed:
                log.warning("storing a running step's output failed: %s", exc)
            self._write_failed = True
        else:
            self.writes += 1
            self._write_failed = False

    def abort(self) -> None:
        """Stop at once (the step's task is being cancelled)."""
        self._closing = True
        if self._pump is not None:
            self._pump.cancel()

    async def close(self) -> None:
        """Stop writing and send the last lines (the step's end stores the whole log)."""
        self._closing = True
        pump = self._pump
        if pump is not None:
            # Not cancelled: a write under way finishes (a cancelled query can spoil a connection).
            self._wake.set()
            await asyncio.gather(pump, return_exceptions=True)
        await self._send_batch(final=True)
