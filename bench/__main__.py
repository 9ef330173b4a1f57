"""``python -m bench``: print every benchmark's figures (medians; 2-core shared machines)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time

MODULES = [
    "bench.bench_engine",
    "bench.bench_slack",
    "bench.bench_jenkins",
    "bench.bench_api",
    "bench.bench_api_resilience",
    "bench.bench_triggers",
    "bench.bench_slack_home",
    "bench.bench_cli",
    "bench.bench_seed",
    "bench.bench_throughput",
    "bench.bench_round_trips",
    "bench.bench_memory",
    "bench.bench_soak",
]


def main() -> int:
    failed = 0
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        print(f"\n## {name}", flush=True)
        started = time.monotonic()
        try:
            takes_argv = bool(inspect.signature(module.main).parameters)
            result = module.main([]) if takes_argv else module.main()
            if inspect.iscoroutine(result):
                asyncio.run(result)
        except Exception as exc:  # keep going: one benchmark's failure hides no other figure
            failed += 1
            print(f"{name} failed: {exc!r}", file=sys.stderr)
        print(f"({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
