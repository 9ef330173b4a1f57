"""``ansflow run`` on SQLite loads neither the PostgreSQL driver nor the scheduler.

Checked from outside, as in ``tests/test_cli_imports.py``: the command runs in a
fresh interpreter with ``-X importtime``, which lists every module it imported.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import write_pipeline
from tests.test_cli_imports import heavy_in, imported


def test_run_on_sqlite_imports_no_postgres_driver_scheduler_or_slack_parsing(
    tmp_path: Path,
) -> None:
    write_pipeline(tmp_path / "pipelines", "p", "name: p\nsteps:\n  - {name: a, run: 'true'}\n")
    modules = imported(["run", "p"], tmp_path)
    assert "engine.runner" in modules
    assert "storage.outage" in modules  # the code that knows asyncpg's errors is there
    assert heavy_in(modules, ("asyncpg", "apscheduler", "bot")) == []


def test_a_scheduled_pipeline_still_checks_its_cron_when_run(tmp_path: Path) -> None:
    write_pipeline(
        tmp_path / "pipelines",
        "nightly",
        "name: nightly\nparameters:\n  who: {default: nobody}\n"
        "schedule:\n  - {cron: '0 3 * * *', timezone: Europe/Paris}\n"
        "steps:\n  - {name: a, run: 'true'}\n",
    )
    modules = imported(["run", "nightly", "who=me"], tmp_path)
    assert "apscheduler.triggers.cron" in modules
    assert "bot.parsing" in modules  # key=value words are parsed as Slack's are
