"""Trigger keys in pipeline files: what loads, and bad input reported with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.pipelines import parse_pipeline

BASE = """\
name: deploy
parameters:
  env: {default: staging}
steps:
  - {name: go, run: 'true'}
"""


def problems(extra: str) -> list[str]:
    pipeline, found = parse_pipeline(BASE + extra, Path("deploy.yml"))
    assert pipeline is None
    return [str(p) for p in found]


def test_the_documented_example_loads() -> None:
    text = (
        BASE
        + """\
schedule:
  - cron: "0 3 * * 1-5"
    timezone: Europe/Berlin
    parameters: {env: staging}
  - every: 30s
triggers:
  webhook:
    secret_env: GITHUB_WEBHOOK_SECRET
    parameters: {env: "$.ref"}
concurrency:
  group: "deploy-${env}"
  mode: queue
"""
    )
    pipeline, found = parse_pipeline(text, Path("deploy.yml"))
    assert found == [] and pipeline is not None
    assert pipeline.schedule is not None and len(pipeline.schedule) == 2
    assert pipeline.schedule[1].timezone == "UTC"
    assert pipeline.triggers is not None and pipeline.triggers.webhook is not None
    assert pipeline.concurrency is not None and pipeline.concurrency.mode == "queue"


@pytest.mark.parametrize(
    ("extra", "line", "words"),
    [
        ("schedule:\n  - cron: '0 0 30 2 *'\n", 7, "never fires"),
        ("schedule:\n  - cron: '0 0 31 4,6,9,11 *'\n", 7, "never fires"),
        ("schedule:\n  - cron: '* * * *'\n", 7, "write 5"),
        ("schedule:\n  - cron: '61 * * * *'\n", 7, "not valid"),
        ("schedule:\n  - cron: '0 3 * * 8'\n", 7, "out of range"),
        ("schedule:\n  - every: 0s\n", 7, "shortest interval is 1s"),
        ("schedule:\n  - every: 0.5s\n", 7, "shortest interval is 1s"),
        ("schedule:\n  - every: soon\n", 7, "not an interval"),
        ("schedule:\n  - every: 5m\n    cron: '* * * * *'\n", 7, "exactly one of cron or every"),
        ("schedule:\n  - cron: '0 3 * * *'\n    timezone: Mars/Olympus\n", 8, "unknown timezone"),
        ("schedule:\n  - every: 5m\n    parameters: {region: eu}\n", 7, "region"),
        ("concurrency:\n  group: 'deploy-${region}'\n", 7, "${region}"),
        ("concurrency:\n  group: g\n  mode: later\n", 8, "queue"),
        ("triggers:\n  webhook:\n    parameters: {env: $.ref}\n", 8, "secret_env"),
        ("triggers:\n  webhook:\n    secret_env: S\n    parameters: {env: ref}\n", 9, "body path"),
    ],
)
def test_bad_trigger_keys_name_the_file_and_line(extra: str, line: int, words: str) -> None:
    found = problems(extra)
    assert len(found) == 1, found
    assert found[0].startswith(f"deploy.yml:{line}:"), found
    assert words in found[0]
