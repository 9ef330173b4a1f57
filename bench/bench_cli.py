"""The terminal's own figures: ``python -m bench.bench_cli [RUNS [COMMAND]]``.

Each figure is the median wall time of fresh ``ansflow`` processes (the
installed console script), after warm-up runs that also apply the
migrations: ``ansflow --help``; ``ansflow run`` of a 1-step pipeline
(``true``) on SQLite; and the marginal cost of a step, from pipelines of
``BASE`` and ``BASE + EXTRA`` steps (the start of a process varies by a
hundred milliseconds here, so the extra steps must add several hundred).
Output goes to a pipe, as in scripts and CI.
``COMMAND`` times another ``ansflow`` (e.g. a wrapper running an older checkout).

The runs of the two long pipelines alternate, so a change of the shared
machine's load while the figures are taken weighs on both alike; "from pairs"
is the median of the differences of runs taken one after the other.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANSFLOW = str(Path(sys.executable).parent / "ansflow")
RUNS = 15
WARMUP = 2
BASE = 10
EXTRA = 50
LABELS = ("from medians", "from minimums", "from pairs", "CPU")


def pipeline(name: str, steps: int) -> str:
    body = "".join(f"  - {{name: s{i}, run: 'true'}}\n" for i in range(steps))
    return f"name: {name}\nsteps:\n{body}"


def timed(
    args: list[str], cwd: Path, runs: int, command: str = ANSFLOW
) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of each counted run."""
    return timed_alternately([args], cwd, runs, command)[0]


def timed_alternately(
    argsets: list[list[str]], cwd: Path, runs: int, command: str = ANSFLOW
) -> list[tuple[list[float], list[float]]]:
    """:func:`timed` for several commands, their runs taken in turn (a, b, a, b, ...)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    measured: list[tuple[list[float], list[float]]] = [([], []) for _ in argsets]
    for i in range(WARMUP + runs):
        for args, (times, cpu) in zip(argsets, measured, strict=True):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            done = subprocess.run(
                [command, *args], cwd=cwd, env=env, capture_output=True, check=False
            )
            took = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                raise RuntimeError(
                    f"ansflow {' '.join(args)} exited {done.returncode}: {done.stderr!r}"
                )
            if i >= WARMUP:
                times.append(took)
                cpu.append(used)
    return measured


def figure(label: str, measured: tuple[list[float], list[float]]) -> None:
    times, cpu = measured
    middle = statistics.median(times)
    print(
        f"{label}: median {middle * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, n={len(times)}); "
        f"CPU median {statistics.median(cpu) * 1000:.0f} ms",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    runs = int(argv[0]) if argv else RUNS
    command = argv[1] if argv and len(argv) > 1 else ANSFLOW
    load1, load5, _ = os.getloadavg()
    print(f"(load average {load1:.1f} / {load5:.1f}, {os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        for name, steps in (("one", 1), ("base", BASE), ("more", BASE + EXTRA)):
            (cwd / name).mkdir()  # a folder each: a run parses only its own file
            (cwd / name / f"{name}.yml").write_text(pipeline(name, steps))
        figure("ansflow --help", timed(["--help"], cwd, runs, command))
        one = ["run", "one", "--pipelines", "one"]
        figure("ansflow run, 1 step", timed(one, cwd, runs, command))
        base_args = ["run", "base", "--pipelines", "base"]
        more_args = ["run", "more", "--pipelines", "more"]
        base, more = timed_alternately([base_args, more_args], cwd, runs, command)
        figure(f"ansflow run, {BASE} steps", base)
        figure(f"ansflow run, {BASE + EXTRA} steps", more)
        pairs = [m - b for m, b in zip(more[0], base[0], strict=True)]
        per_step = [
            (statistics.median(more[0]) - statistics.median(base[0])) / EXTRA,
            (min(more[0]) - min(base[0])) / EXTRA,
            statistics.median(pairs) / EXTRA,
            (statistics.median(more[1]) - statistics.median(base[1])) / EXTRA,
        ]
        print(
            "marginal step: "
            + ", ".join(
                f"{label} {value * 1000:.1f} ms"
                for label, value in zip(LABELS, per_step, strict=True)
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
