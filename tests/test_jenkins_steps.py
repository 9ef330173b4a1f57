"""Jenkins steps end to end: the real server and engine, real python-jenkins, FakeJenkins."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import ToolNotActive, UnknownTool
from engine.jenkins.logs import jenkins_console
from engine.state import RunStatus, StepStatus
from storage.models import CICDTool
from tests.fakes.jenkins import FakeJenkins
from tests.helpers import eventually, serving
from tests.jenkins_e2e import (
    DEPLOY_PARAMS,
    TOKEN,
    finished,
    jenkins_settings,
    jenkins_step,
    new_fake,
    service,
    start_run,
    triggers,
    write_jenkins_pipeline,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with new_fake() as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        yield fake


async def test_successful_build_ends_the_step_in_success_with_its_url(
    database_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    fake.script("deploy-web", "SUCCESS", duration=0.3, console="deploying\ndone\n")
    async with serving(jenkins_settings(database_url, pipelines_dir, fake)) as server:
        run_id = await start_run(server, version="2.5", env="production")
        run = await finished(server, run_id)
        step = await jenkins_step(run_id)
    assert run.status == RunStatus.SUCCESS
    assert run.steps[0].status == StepStatus.SUCCESS
    assert step.external_url == f"{fake.url}job/deploy-web/1/"
    assert step.external_id == f"{fake.url}queue/item/1/"
    assert fake.build("deploy-web", 1).params == {"VERSION": "2.5", "ENV": "production"}
    assert triggers(fake) == 1


@pytest.mark.parametrize("result", ["FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT"])
async def test_unsuccessful_result_fails_the_step_with_the_console_tail(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins, result: str
) -> None:
    write_jenkins_pipeline(pipelines_dir, extra_steps="  - name: After\n    run: echo after\n")
    fake.script("deploy-web", result, duration=0.1, console="compiling\nerror: broken widget\n")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
        step = await jenkins_step(run.id)
    assert run.status == RunStatus.FAILED
    assert run.failed_step == "Deploy"
    assert step.status == StepStatus.FAILED
    assert step.reason == f"Jenkins build #1 finished {result}"
    assert "error: broken widget" in step.log_tail
    assert f"Finished: {result}" in step.log_tail
    assert run.steps[1].status == StepStatus.SKIPPED


async def test_folder_job_and_parameter_substitution(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.add_job("team/app/deploy", params=[("TAG", "string", ""), ("NOTE", "string", "")])
    write_jenkins_pipeline(
        pipelines_dir,
        job="team/app/deploy",
        parameters='{TAG: "v${version}-${env}", NOTE: "$(rm -rf /) $version `x`"}',
    )
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server, version="3.1", env="prod;ls"))
        step = await jenkins_step(run.id)
    assert run.status == RunStatus.SUCCESS
    assert fake.build("team/app/deploy", 1).params == {
        "TAG": "v3.1-prod;ls",
        "NOTE": "$(rm -rf /) $version `x`",
    }
    assert step.external_url == f"{fake.url}job/team/job/app/job/deploy/1/"


async def test_parameterized_job_without_step_parameters_uses_its_defaults(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, parameters="{}")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.SUCCESS
    assert fake.build("deploy-web", 1).params == {"VERSION": "1.0", "ENV": "staging"}


async def test_job_without_parameters_is_started_with_build(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.add_job("plain")
    write_jenkins_pipeline(pipelines_dir, job="plain", parameters="{}")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.SUCCESS
    assert fake.count("/job/plain/build", "POST") == 1


async def test_unknown_job_fails_the_step_clearly(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, job="no-such-job")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.FAILED
    assert run.reason == "Jenkins has no job 'no-such-job'."


async def test_disabled_job_fails_the_step_clearly(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.set_disabled("deploy-web")
    write_jenkins_pipeline(pipelines_dir)
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.FAILED
    assert run.reason == "Jenkins job 'deploy-web' is disabled."


async def test_parameters_for_a_job_without_any_fail_the_step_clearly(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.add_job("plain")
    write_jenkins_pipeline(pipelines_dir, job="plain", parameters='{X: "1"}')
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.FAILED
    assert run.reason == "Jenkins job 'plain' takes no parameters, but some were given."
    assert fake.job("plain").builds == {}


@pytest.mark.parametrize("allowed", [False, True], ids=["bad-token", "no-permission"])
async def test_refused_credentials_fail_the_step_without_showing_the_token(
    sqlite_url: str,
    pipelines_dir: Path,
    fake: FakeJenkins,
    allowed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-t0ken-also-secret"
    user = "ansflow-bot" if not allowed else "reader"
    if allowed:
        fake.add_user("reader", wrong, allowed=False)
    write_jenkins_pipeline(pipelines_dir)
    settings = jenkins_settings(
        sqlite_url, pipelines_dir, fake, JENKINS_USER=user, JENKINS_API_TOKEN=wrong
    )
    async with serving(settings) as server:
        run = await finished(server, await start_run(server))
        step = await jenkins_step(run.id)
    assert run.status == RunStatus.FAILED
    status = "401" if not allowed else "403"
    assert run.reason is not None and f"(HTTP {status})" in run.reason
    # SQL parameters logged by the ORM at DEBUG hold the stored token; the service runs
    # those loggers at WARNING (ansflow.cli). Everything else may log at any level.
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("tortoise", "aiosqlite"))
    )
    assert "HTTP 40" in logged  # the failure was logged, and the check below sees it
    for text in (run.reason, step.log, step.log_tail, str(step.external_state), logged):
        assert wrong not in text and TOKEN not in text


async def test_unreachable_jenkins_is_retried_then_fails_with_the_reason(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir, step_extra="timeout: 1\n    ")
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        await fake.go_down()
        service(server).executor.retry_base = 0.1
        run = await finished(server, await start_run(server))
    assert run.status == RunStatus.FAILED
    assert run.reason == "timed out after 1s (Jenkins jenkins unreachable: connection refused)"


async def test_jenkins_back_within_the_retry_time_starts_the_build_once(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        await fake.go_down()
        service(server).executor.retry_base = 0.1
        run_id = await start_run(server)
        await eventually(lambda: jenkins_step(run_id), lambda s: s.status == "running")
        await fake.come_up()
        run = await finished(server, run_id)
    assert run.status == RunStatus.SUCCESS
    assert triggers(fake) == 1


async def test_console_output_with_the_token_is_masked(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    fake.script("deploy-web", "FAILURE", duration=0.1, console=f"curl -u bot:{TOKEN} x\nboom\n")
    write_jenkins_pipeline(pipelines_dir)
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        run = await finished(server, await start_run(server))
        step = await jenkins_step(run.id)
        console = await jenkins_console(service(server).clients, server.core.masker, step)
    assert "curl -u bot:*** x" in step.log_tail
    assert TOKEN not in step.log and TOKEN not in step.log_tail
    assert console is not None
    assert console.endswith("curl -u bot:*** x\nboom\nFinished: FAILURE\n")


async def test_inactive_or_unknown_tool_refuses_the_run(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    write_jenkins_pipeline(pipelines_dir)
    write_jenkins_pipeline(pipelines_dir, name="elsewhere", parameters="{}", step_extra="")
    (pipelines_dir / "elsewhere.yml").write_text(
        (pipelines_dir / "elsewhere.yml").read_text().replace("tool: jenkins", "tool: other")
    )
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        with pytest.raises(UnknownTool):
            await start_run(server, "elsewhere")
        await CICDTool.filter(name="jenkins").update(status="inactive")
        with pytest.raises(ToolNotActive, match="CI/CD tool is not active"):
            await start_run(server)
    assert triggers(fake) == 0


async def test_tool_is_registered_from_settings_with_its_health(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    async with serving(jenkins_settings(sqlite_url, pipelines_dir, fake)) as server:
        tool = await eventually(
            lambda: CICDTool.filter(name="jenkins").first(),
            lambda t: t is not None and t.last_health_ok is not None,
        )
        assert server.core.masker(f"x {TOKEN} y") == "x *** y"
    assert tool is not None
    assert (tool.url, tool.username, tool.token, tool.status) == (
        fake.url,
        "ansflow-bot",
        TOKEN,
        "active",
    )
    assert tool.last_health_ok is True


async def test_the_api_logs_route_reads_the_whole_console_from_jenkins(
    sqlite_url: str, pipelines_dir: Path, fake: FakeJenkins
) -> None:
    import aiohttp

    from tests.api_support import SECRET, bearer

    write_jenkins_pipeline(pipelines_dir)
    console = "".join(f"line {i}\n" for i in range(200)) + f"token {TOKEN}\n"
    fake.script("deploy-web", "SUCCESS", duration=0.1, console=console)
    settings = jenkins_settings(sqlite_url, pipelines_dir, fake, ANSFLOW_JWT_SECRET=SECRET)
    async with serving(settings) as server:
        run = await finished(server, await start_run(server))
        url = f"{server.url}/api/v1/cicd/executions/{run.id}/logs/?step=Deploy"
        async with aiohttp.ClientSession() as http, http.get(url, headers=bearer("U1")) as reply:
            text = await reply.text()
    assert reply.status == 200
    assert "line 0\n" in text and "line 199\n" in text
    assert TOKEN not in text and "token ***" in text
