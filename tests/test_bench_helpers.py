"""The benchmarks' own arithmetic: what they print must mean what it says."""

from __future__ import annotations

from bench.serve_proc import busy_share, machine_ticks


def test_how_busy_the_machine_was_comes_from_two_readings_of_its_ticks() -> None:
    assert busy_share((10, 100), (60, 200)) == "; machine 50 % busy"
    assert busy_share(None, (60, 200)) == ""
    assert busy_share((10, 100), (10, 100)) == ""  # no time passed: nothing to say
    now = machine_ticks()
    assert now is not None and 0 <= now[0] <= now[1]  # this is Linux, with /proc
