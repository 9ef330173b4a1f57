"""Step output as terminal lines, each prefixed with its step's name (pure).

Output arrives in chunks cut anywhere, several steps at once (parallel
steps): :class:`StepLines` keeps each step's unfinished line until its end
arrives, so a line is printed whole and under its own step's name. A carriage
return rewrites the line (progress bars): only what follows the last one is
kept. Control characters other than tab and escape are dropped; an
unfinished line longer than ``MAX_LINE`` is printed as it is, so memory stays
bounded whatever a step prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def prefix(step: str) -> str:
    return f"[{step}] "


def clean(line: str) -> str:
    """One line as it should be shown: the text after its last ``\\r``, no control bytes."""
    line = line.removesuffix("\r")
    if "\r" in line:
        line = line.rsplit("\r", 1)[1]
    return _CONTROL.sub("", line)


@dataclass
class StepLines:
    """Complete lines per step, from chunks of text cut anywhere."""

    max_line: int = MAX_LINE
    _partial: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def feed(self, step: str, text: str) -> list[tuple[str, str]]:
        """``(step, line)`` for every line ``text`` completes; keeps the rest."""
        if not text:
            return []
        self.seen.add(step)
        pending = self._partial.pop(step, "") + text
        *complete, rest = pending.split("\n")
        while len(rest) > self.max_line:
            complete.append(rest[: self.max_line])
            rest = rest[self.max_line :]
        if rest:
            self._partial[step] = rest
        return [(step, clean(line)) for line in complete]

    def flush(self, step: str) -> list[tuple[str, str]]:
        """The step's unfinished last line, if any (its output has ended)."""
        rest = self._partial.pop(step, "")
        return [(step, clean(rest))] if rest else []

    def flush_all(self) -> list[tuple[str, str]]:
        return [line for step in list(self._partial) for line in self.flush(step)]


def render_plain(lines: list[tuple[str, str]]) -> str:
    """Lines as plain text, ready to write (empty when there are none)."""
    return "".join(f"{prefix(step)}{line}\n" for step, line in lines)
