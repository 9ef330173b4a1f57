"""Job sync (``ansflow jenkins sync``) and the check of pipelines against synced jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ansflow.jenkins_cli import cmd_jenkins_sync, sync_tool
from engine.jenkins.sync import job_problem, pipeline_job_problems
from engine.pipelines import JenkinsSpec, Pipeline
from storage.db import close_db, open_db
from storage.models import JenkinsJob
from tests.fakes.jenkins import FakeJenkins
from tests.jenkins_e2e import DEPLOY_PARAMS, TOKEN, USER, jenkins_settings, new_fake


def deploy_pipeline(job: str, parameters: dict[str, str]) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": "deploy",
            "steps": [{"name": "Deploy", "jenkins": {"job": job, "parameters": parameters}}],
        }
    )


async def test_sync_stores_jobs_with_folders_and_parameters_and_drops_gone_ones(
    database_url: str, pipelines_dir: Path
) -> None:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("team/app/build", params=[("TAG", "string", "")])
        fake.add_job("old")
        settings = jenkins_settings(database_url, pipelines_dir, fake)
        first = await sync_tool(settings, "jenkins")
        with fake.state.lock:
            del fake.state.jobs["old"]
        fake.set_disabled("deploy-web")
        second = await sync_tool(settings, "jenkins")
    assert (first.jobs, first.added, first.removed) == (3, 3, 0)
    assert (second.jobs, second.added, second.updated, second.removed) == (2, 0, 1, 1)
    await open_db(database_url, apply_migrations=False)
    try:
        rows = {j.full_name: j for j in await JenkinsJob.all()}
        problems = await pipeline_job_problems(deploy_pipeline("team/app/build", {"TAG": "x"}))
        gone = await pipeline_job_problems(deploy_pipeline("old", {}))
    finally:
        await close_db()
    assert set(rows) == {"deploy-web", "team/app/build"}
    assert rows["deploy-web"].buildable is False
    assert rows["deploy-web"].parameters[1] == {
        "name": "ENV",
        "type": "choice",
        "default": "staging",
        "choices": ["staging", "production"],
    }
    assert rows["team/app/build"].url == f"{fake.url}job/team/job/app/job/build/"
    assert problems == {}
    assert gone == {"Deploy": "Jenkins job 'old' no longer exists"}


def test_cli_sync_prints_a_summary_and_fails_clearly(
    sqlite_url: str,
    pipelines_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeJenkins(user=USER, token=TOKEN)
    fake.add_job("deploy-web", params=DEPLOY_PARAMS)
    fake.start_in_thread()
    try:
        for key, value in {
            "ANSFLOW_DATABASE_URL": sqlite_url,
            "JENKINS_URL": fake.url,
            "JENKINS_USER": USER,
            "JENKINS_API_TOKEN": TOKEN,
        }.items():
            monkeypatch.setenv(key, value)
        assert cmd_jenkins_sync(argparse.Namespace(tool="jenkins")) == 0
        assert capsys.readouterr().out == "synced jenkins: 1 job(s) (1 new, 0 changed, 0 removed)\n"
        assert cmd_jenkins_sync(argparse.Namespace(tool="nope")) == 1
        assert capsys.readouterr().err == "ansflow: there is no CI/CD tool named 'nope'\n"
        fake.run_sync(fake.go_down())
        assert cmd_jenkins_sync(argparse.Namespace(tool="jenkins")) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"ansflow: Cannot connect to Jenkins at {fake.url}")
        assert TOKEN not in err
    finally:
        fake.stop_in_thread()


def test_job_problem_flags_missing_jobs_disabled_jobs_and_unknown_parameters() -> None:
    step = deploy_pipeline("deploy-web", {"VERSION": "1", "COLOR": "x"}).steps[0]
    assert isinstance(step, JenkinsSpec)
    params = [{"name": "VERSION"}]
    assert job_problem(step, None) is None
    assert job_problem(step, {}) == "Jenkins job 'deploy-web' no longer exists"
    disabled = {"deploy-web": {"buildable": False, "parameters": params}}
    assert job_problem(step, disabled) == "Jenkins job 'deploy-web' is disabled"
    jobs = {"deploy-web": {"buildable": True, "parameters": params}}
    assert job_problem(step, jobs) == "Jenkins job 'deploy-web' has no parameter COLOR"
