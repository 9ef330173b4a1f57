"""``ansflow`` through its real console script, in subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_pipeline

ANSFLOW = str(Path(sys.executable).parent / "ansflow")
REPO = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    full_env.update(env or {})
    return subprocess.run(
        [ANSFLOW, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.postgres
def test_db_upgrade_takes_sslmode_and_ssl_false_and_says_when_tls_is_refused(
    workdir: Path, pg_url: str
) -> None:
    for query in ("?sslmode=disable", "?ssl=false"):
        plain = run_cli(["db", "upgrade"], workdir, {"ANSFLOW_DATABASE_URL": pg_url + query})
        assert plain.returncode == 0, plain.stderr
        assert "database is up to date" in plain.stdout
    # The throwaway server has no TLS: asked to require it, the command says so, in one line.
    tls = run_cli(["db", "upgrade"], workdir, {"ANSFLOW_DATABASE_URL": pg_url + "?sslmode=require"})
    assert tls.returncode == 1
    assert "cannot reach the database" in tls.stderr and "SSL" in tls.stderr, tls.stderr


@pytest.mark.postgres
def test_replicas_starting_together_on_a_new_database_migrate_it_once(
    workdir: Path, pg_url: str
) -> None:
    # A first deployment starts its replicas at the same moment: each applies the
    # schema; one at a time, the later ones finding it done.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "ANSFLOW_DATABASE_URL": pg_url,
    }
    upgrades = [
        subprocess.Popen(
            [ANSFLOW, "db", "upgrade"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in upgrades]
    for code, out, err in results:
        assert code == 0, err
        assert "database is up to date" in out


def stored_runs(cwd: Path, missing_ok: bool = False) -> list[tuple[str, str]]:
    """(pipeline, status) of every stored run; with ``missing_ok``, none if no database yet."""
    if missing_ok and not (cwd / "ansflow.db").exists():
        return []
    with sqlite3.connect(cwd / "ansflow.db") as conn:
        return list(conn.execute("SELECT pipeline, status FROM run ORDER BY id"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_pipeline(
        tmp_path / "pipelines",
        "greet",
        "name: greet\nparameters:\n  who: {default: world}\n  msg: {default: ''}\nsteps:\n"
        '  - name: hello\n    run: echo "hello $who $msg"\n'
        "  - name: fail-if-asked\n    run: test \"$who\" != boom || { echo 'it went boom'; exit 4; }\n",
    )
    return tmp_path


def test_shipped_example_runs_on_embedded_defaults(tmp_path: Path) -> None:
    result = run_cli(
        ["run", "hello", "who=new user"],
        tmp_path,
        {"ANSFLOW_PIPELINES_DIR": str(REPO / "examples" / "pipelines")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello run 1 succeeded" in result.stdout
    assert stored_runs(tmp_path) == [("hello", "success")]


def test_run_succeeds_with_quoted_values_and_records_the_run(workdir: Path) -> None:
    result = run_cli(["run", "greet", "who=team", 'msg="two words"'], workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(workdir / "ansflow.db") as conn:
        (log,) = conn.execute("SELECT log FROM step_run WHERE name = 'hello'").fetchone()
    assert log.strip() == "hello team two words"
    assert "✔ hello: success" in result.stdout
    assert "greet run 1 succeeded" in result.stdout
    assert stored_runs(workdir) == [("greet", "success")]


def test_a_failed_run_exits_1_and_shows_the_log_tail(workdir: Path) -> None:
    result = run_cli(["run", "greet", "who=boom"], workdir)
    assert result.returncode == 1
    assert "✘ greet run 1 failed" in result.stdout
    assert "exited with 4" in result.stdout
    assert "it went boom" in result.stdout
    assert stored_runs(workdir) == [("greet", "failed")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "gret"], "There is no pipeline named `gret`. Did you mean greet?"),
        (["run", "greet", "colour=red"], "Unknown parameter colour for `greet`"),
        (["run", "greet", "=x"], "ansflow:"),
        (["run", "greet", "who"], "Expected key=value"),
        (["run", "greet", 'msg="two words'], 'Unbalanced " in the value of `msg`.'),
    ],
)
def test_bad_input_is_one_clear_line_and_creates_nothing(
    workdir: Path, args: list[str], message: str
) -> None:
    result = run_cli(args, workdir)
    assert result.returncode == 1
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert stored_runs(workdir, missing_ok=True) == []


def test_an_invalid_setting_stops_with_one_line(workdir: Path) -> None:
    result = run_cli(["run", "greet"], workdir, {"ANSFLOW_POLL_INTERVAL": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ansflow: invalid setting ANSFLOW_POLL_INTERVAL: Input should be a valid number, "
        "unable to parse string as a number"
    ]


def test_an_unreachable_database_is_a_clear_error_without_the_password(workdir: Path) -> None:
    result = run_cli(
        ["run", "greet"],
        workdir,
        {"ANSFLOW_DATABASE_URL": "postgres://ci:hunter22@127.0.0.1:1/ansflow"},
    )
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "cannot reach the database at postgres://ci:***@127.0.0.1:1/ansflow" in out
    assert "hunter22" not in out
    assert "Traceback" not in out


def test_validate_reports_each_bad_file_and_exits_nonzero(workdir: Path) -> None:
    (workdir / "pipelines" / "broken.yml").write_text(
        "name: broken\nsteps:\n  - name: a\n    run: x\n    timeout: -1\n"
    )
    result = run_cli(["validate", str(workdir / "pipelines")], workdir)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {workdir / 'pipelines' / 'broken.yml'}:5: step 1 (a): timeout must be a number "
        "of seconds more than 0, e.g. 600"
    ]
    assert result.stdout.splitlines() == [f"ok: {workdir / 'pipelines' / 'greet.yml'} (greet)"]
    (workdir / "pipelines" / "broken.yml").unlink()
    assert run_cli(["validate", str(workdir / "pipelines")], workdir).returncode == 0


def test_schema_prints_a_json_schema(workdir: Path) -> None:
    result = run_cli(["schema"], workdir)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "AnsFlow pipeline"
    assert "steps" in schema["properties"]


def test_db_upgrade_applies_migrations(workdir: Path) -> None:
    result = run_cli(["db", "upgrade"], workdir)
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    with sqlite3.connect(workdir / "ansflow.db") as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"run", "step_run", "approval", "outbox_message", "cicd_tool"} <= tables
