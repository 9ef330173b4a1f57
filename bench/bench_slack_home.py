"""Form and App Home figures: ``python -m bench.bench_slack_home``.

1. Command → views.open: from sending a signed ``/ansflow run PIPELINE``
   (a required value missing) to the fake Slack receiving views.open
   (Slack allows 3 s). Median and max of 20.
2. Change → Home republish: from a run's end being committed (the engine's
   ``run.finished`` event) to views.publish of the starter's Home showing it,
   at production pacing (the outbox's settle and per-person pace included).
   Median and max of 8 runs, started 2 s apart.

The real server (SQLite in a temporary folder) and the fake Slack share one
process and event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

from bot.notifier import Pacing
from engine.events import Event, RunFinished
from tests.fakes.slack import FakeSlack
from tests.helpers import write_pipeline
from tests.slack_interactive import home_opened_body, json_headers
from tests.slack_signing import ALICE, SlackHarness, slack_server

FORM = "name: formy\nparameters:\n  env: {required: true}\nsteps:\n  - {name: s, run: 'true'}\n"
QUICK = "name: quick\nsteps:\n  - {name: s, run: 'true'}\n"
OPENS = 20
RUNS = 8


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def until(probe: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


async def views_open_latency(slack: SlackHarness) -> None:
    took = []
    for count in range(1, OPENS + 1):
        started = time.monotonic()
        await slack.command("run formy")
        await until(lambda c=count: len(slack.fake.opened_views) >= c)
        took.append(slack.fake.opened_views[count - 1].opened_at - started)
    print(
        f"command → views.open: median {median(took) * 1000:.1f} ms, "
        f"max {max(took) * 1000:.1f} ms ({OPENS} commands)"
    )


async def republish_latency(slack: SlackHarness) -> None:
    body = home_opened_body(ALICE)
    await slack.post(body, json_headers(body))
    await until(lambda: slack.fake.home_of(ALICE) is not None)
    ended: dict[int, float] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, RunFinished):
            ended[event.run.id] = time.monotonic()

    slack.server.core.bus.subscribe(on_event)
    took = []
    for _ in range(RUNS):
        before = len(ended)
        await slack.command("run quick")
        await until(lambda n=before: len(ended) > n)
        run_id = max(ended)

        def shown(run_id: int = run_id) -> float | None:
            for home in slack.fake.views_api.homes:
                text = json.dumps(home.view["blocks"])
                if home.user == ALICE and f"quick #{run_id}" in text and "succeeded" in text:
                    return home.at
            return None

        await until(lambda: shown() is not None)
        took.append((shown() or 0.0) - ended[run_id])
        await asyncio.sleep(2.0)  # spaced out: each change its own republish
    print(
        f"run end → Home republish: median {median(took) * 1000:.0f} ms, "
        f"max {max(took) * 1000:.0f} ms ({RUNS} runs, production pacing)"
    )


async def main() -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipelines"
        write_pipeline(folder, "formy", FORM)
        write_pipeline(folder, "quick", QUICK)
        async with FakeSlack() as fake:
            url = f"sqlite://{Path(tmp) / 'bench.db'}"
            async with slack_server(url, folder, fake, pacing=Pacing()) as slack:
                await views_open_latency(slack)
                await republish_latency(slack)


if __name__ == "__main__":
    asyncio.run(main())
