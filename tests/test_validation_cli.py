"""``ansflow validate`` through the real console script: what a pipeline author reads."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import run_cli


def test_validate_names_a_missing_folder_and_the_setting(tmp_path: Path) -> None:
    result = run_cli(["validate"], tmp_path, {"ANSFLOW_PIPELINES_DIR": "gone"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: gone: pipelines folder gone (that is {tmp_path / 'gone'}) does not exist: no "
        "pipelines are loaded; create it or set ANSFLOW_PIPELINES_DIR to the folder of "
        "pipeline files"
    ]


def test_validate_reports_typos_and_undeclared_references_and_exits_nonzero(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "deploy.yml").write_text(
        "name: deploy\nparameters:\n  version: {}\nsteps:\n"
        "  - name: Build\n    run: make\n    timout: 5\n"
        "  - name: Ship\n    jenkins: {job: ship, parameters: {V: '${versoin}'}}\n"
    )
    result = run_cli(["validate", str(folder)], tmp_path)
    assert result.returncode == 1
    path = folder / "deploy.yml"
    assert result.stderr.splitlines() == [
        f"error: {path}:7: unknown key `timout` in step 1 (Build); did you mean `timeout`? "
        "allowed: name, run, timeout, env, retry_on_restart",
        f"error: {path}:9: step 2 (Ship): Jenkins parameter V uses `${{versoin}}`, but the "
        "pipeline declares no parameter `versoin`; did you mean `${version}`? declared: version",
    ]
    assert result.stdout == ""
