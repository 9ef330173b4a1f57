"""Each ``ansflow`` command loads only what it needs (what a person waits for at start).

Checked from outside: the command runs in a fresh interpreter with
``-X importtime``, which lists every module it imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_pipeline

HEAVY = ("tortoise", "aiohttp", "slack_sdk", "slack_bolt", "rich", "pydantic_settings", "jenkins")
ENGINE = ("engine.runner", "engine.executors", "storage")
MAIN = "import sys; from ansflow.cli import main; sys.exit(main())"  # as the console script


def imported(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    full_env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", MAIN, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heavy_in(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages or m.startswith(packages))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["token", "create", "--user", "U1"],
        ["schema"],
        ["validate", "pipelines"],
        ["manifest", "--url", "https://ansflow.example.com"],
    ],
    ids=["help", "run-help", "token", "schema", "validate", "manifest"],
)
def test_light_commands_import_no_engine_database_or_http(tmp_path: Path, args: list[str]) -> None:
    write_pipeline(tmp_path / "pipelines", "p", "name: p\nsteps:\n  - {name: a, run: 'true'}\n")
    modules = imported(args, tmp_path, {"ANSFLOW_JWT_SECRET": "a-secret-for-the-test-only"})
    assert "ansflow.cli" in modules
    assert heavy_in(modules, HEAVY) == []
    assert heavy_in(modules, ENGINE) == []


def test_help_imports_neither_settings_nor_pydantic(tmp_path: Path) -> None:
    modules = imported(["--help"], tmp_path)
    assert heavy_in(modules, ("pydantic", "yaml", "asyncio", "ansflow.settings")) == []


def test_run_in_a_pipe_does_not_import_rich(tmp_path: Path) -> None:
    write_pipeline(tmp_path / "pipelines", "p", "name: p\nsteps:\n  - {name: a, run: 'true'}\n")
    modules = imported(["run", "p"], tmp_path)
    assert "engine.runner" in modules
    assert heavy_in(modules, ("rich", "aiohttp", "slack_sdk", "slack_bolt", "jenkins")) == []
    # The schema was current after the first run's migrations: the migrator is not loaded.
    modules = imported(["run", "p"], tmp_path)
    assert heavy_in(modules, ("tortoise.migrations.api", "storage.migrations.0001_initial")) == []
