"""Helpers for end-to-end Jenkins tests: the real server, real python-jenkins, FakeJenkins."""

from __future__ import annotations

from pathlib import Path

from ansflow.jenkins_setup import JENKINS, JenkinsService
from ansflow.settings import Settings
from engine.events import RunSnapshot
from engine.permissions import Actor
from engine.runner import RunRequest
from engine.state import StepStatus
from storage.models import StepRun
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import RunningServer, eventually, make_settings, write_pipeline

TOKEN = "jt0ken-5ecret-never-shown"
USER = "ansflow-bot"
DEPLOY_PARAMS = [("VERSION", "string", "1.0"), ("ENV", "choice", ["staging", "production"])]


def new_fake() -> FakeJenkins:
    return FakeJenkins(user=USER, token=TOKEN)


def jenkins_settings(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins, **env: str
) -> Settings:
    values = {
        "JENKINS_URL": fake.url,
        "JENKINS_USER": USER,
        "JENKINS_API_TOKEN": TOKEN,
        "ANSFLOW_POLL_INTERVAL": "0.1",
    }
    values.update(env)
    return make_settings(database_url, pipelines_dir, **values)


def write_jenkins_pipeline(
    folder: Path,
    name: str = "deploy",
    job: str = "deploy-web",
    parameters: str = '{VERSION: "${version}", ENV: "${env}"}',
    extra_steps: str = "",
    step_extra: str = "",
) -> None:
    text = f"""name: {name}
parameters:
  version:
    default: "1.0"
  env:
    default: staging
steps:
  - name: Deploy
    {step_extra}jenkins:
      tool: jenkins
      job: {job}
      parameters: {parameters}
{extra_steps}"""
    write_pipeline(folder, name, text)


def service(server: RunningServer) -> JenkinsService:
    return server.app[JENKINS]


async def start_run(server: RunningServer, pipeline: str = "deploy", **params: str) -> int:
    snapshot = await server.core.engine.start_run(RunRequest(pipeline, params, Actor("U1")))
    return snapshot.id


async def finished(server: RunningServer, run_id: int, timeout: float = 30.0) -> RunSnapshot:
    return await server.core.engine.wait_finished(run_id, timeout)


async def jenkins_step(run_id: int) -> StepRun:
    step = await StepRun.filter(run_id=run_id, kind="jenkins").order_by("position").first()
    assert step is not None
    return step


async def step_reaches(run_id: int, phase: str, timeout: float = 15.0) -> StepRun:
    """Wait until the run's Jenkins step is running in ``phase`` (triggering/queued/building)."""

    async def probe() -> StepRun:
        return await jenkins_step(run_id)

    def ready(step: StepRun) -> bool:
        state = step.external_state or {}
        return step.status == StepStatus.RUNNING and state.get("phase") == phase

    return await eventually(probe, ready, timeout=timeout)


def triggers(fake: FakeJenkins, job: str = "deploy-web") -> int:
    """POSTs that asked Jenkins to queue a build of ``job``."""
    path = "/" + "/".join(f"job/{part}" for part in job.split("/"))
    wanted = {f"{path}/buildWithParameters", f"{path}/build"}
    return sum(1 for r in list(fake.requests) if r.method == "POST" and r.path in wanted)
