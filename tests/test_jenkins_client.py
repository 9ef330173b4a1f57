"""JenkinsClient drives the real python-jenkins against FakeJenkins (a real HTTP server)."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import jenkins
import pytest
import requests

from engine.jenkins import (
    BuildInfo,
    JenkinsAlreadyQueued,
    JenkinsAuthError,
    JenkinsBadRequest,
    JenkinsClient,
    JenkinsError,
    JenkinsJobDisabled,
    JenkinsNotFound,
    JenkinsUnreachable,
    ParamDef,
    QueueItem,
    job_name_from_url,
    queue_number_from_url,
)
from tests.fakes.jenkins import FakeJenkins

T = TypeVar("T")
TOKEN = "11e5ecre7t0ken-do-not-leak"
DEPLOY_PARAMS = [("VERSION", "string", "1.0"), ("ENV", "choice", ["staging", "production"])]


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def fake() -> AsyncIterator[FakeJenkins]:
    async with FakeJenkins(token=TOKEN) as fake:
        fake.add_job("deploy-web", params=DEPLOY_PARAMS)
        fake.add_job("plain")
        fake.add_job("team/app/deploy", params=[("RUN_ID", "string", "")], kind="pipeline")
        yield fake


@pytest.fixture
async def client(fake: FakeJenkins) -> AsyncIterator[JenkinsClient]:
    async with JenkinsClient(fake.url, "admin", TOKEN, timeout=5.0) as client:
        yield client


async def started(client: JenkinsClient, queue_url: str) -> QueueItem:
    number = queue_number_from_url(queue_url)
    assert number is not None

    async def probe() -> QueueItem | None:
        item = await client.queue_item(number)
        return item if item.build_number is not None else None

    return await eventually(probe)


async def finished(client: JenkinsClient, job: str, number: int) -> BuildInfo:
    async def probe() -> BuildInfo | None:
        build = await client.build(job, number)
        return None if build.building else build

    return await eventually(probe)


async def run(client: JenkinsClient, job: str, params: dict[str, str]) -> BuildInfo:
    item = await started(client, await client.trigger(job, params))
    assert item.build_number is not None
    return await finished(client, job, item.build_number)


# -- the normal path ------------------------------------------------------------


async def test_trigger_follows_queue_item_to_successful_build(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.queue_delay = 0.1
    queue_url = await client.trigger("deploy-web", {"VERSION": "2.1"})
    assert queue_url.startswith(f"{fake.url}queue/item/")

    waiting = await client.queue_item(queue_number_from_url(queue_url) or 0)
    assert waiting.waiting and waiting.build_number is None and waiting.why
    item = await started(client, queue_url)
    assert not item.waiting and not item.cancelled
    assert item.build_url == f"{fake.url}job/deploy-web/{item.build_number}/"

    build = await finished(client, "deploy-web", item.build_number or 0)
    assert build.result == "SUCCESS"
    assert build.url == item.build_url
    assert build.queue_id == item.number
    assert 200 <= build.duration_ms < 10_000  # the fake's builds run 0.2 s by default
    assert build.parameters == {"VERSION": "2.1", "ENV": "staging"}  # default filled in


async def test_job_without_parameters_is_started_with_build(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    build = await run(client, "plain", {})
    assert build.result == "SUCCESS" and build.parameters == {}
    assert fake.count("/job/plain/build", method="POST") == 1


@pytest.mark.parametrize("result", ["FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT"])
async def test_build_result_is_reported(
    fake: FakeJenkins, client: JenkinsClient, result: str
) -> None:
    fake.script("deploy-web", result=result, duration=0.05)
    build = await run(client, "deploy-web", {"VERSION": "3"})
    assert build.result == result and not build.building


async def test_folder_job_is_addressed_by_path(fake: FakeJenkins, client: JenkinsClient) -> None:
    build = await run(client, "team/app/deploy", {"RUN_ID": "r-1"})
    assert build.url == f"{fake.url}job/team/job/app/job/deploy/1/"
    assert build.parameters == {"RUN_ID": "r-1"}
    assert fake.count("/job/team/job/app/job/deploy/buildWithParameters") == 1
    assert job_name_from_url(build.url) == "team/app/deploy"


async def test_recent_builds_is_one_request_newest_first(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    for version in ("1", "2", "3"):
        await run(client, "deploy-web", {"VERSION": version})
    before = len(fake.requests)
    builds = await client.recent_builds("deploy-web", limit=2)
    assert len(fake.requests) - before == 1
    assert [(b.number, b.parameters["VERSION"]) for b in builds] == [(3, "3"), (2, "2")]
    assert all(b.result == "SUCCESS" and not b.building for b in builds)


async def test_find_queued_matches_by_parameters(fake: FakeJenkins, client: JenkinsClient) -> None:
    fake.hold_queue("team/app/deploy")
    queue_url = await client.trigger("team/app/deploy", {"RUN_ID": "run-42"})
    await client.trigger("deploy-web", {"VERSION": "9"})

    found = await client.find_queued("team/app/deploy", {"RUN_ID": "run-42"})
    assert found is not None and found.waiting
    assert found.number == queue_number_from_url(queue_url)
    assert await client.find_queued("team/app/deploy", {"RUN_ID": "run-43"}) is None
    assert await client.find_queued("plain", {}) is None


async def test_left_queue_item_is_forgotten_after_ttl(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.queue_item_ttl = 0.2
    queue_url = await client.trigger("plain", {})
    await started(client, queue_url)

    async def forgotten() -> bool:
        try:
            await client.queue_item(queue_number_from_url(queue_url) or 0)
        except JenkinsNotFound as exc:
            return "5 minutes" in str(exc)
        return False

    assert await eventually(forgotten)


# -- refusals -------------------------------------------------------------------


async def test_wrong_token_is_auth_error(fake: FakeJenkins) -> None:
    async with JenkinsClient(fake.url, "admin", "not-the-token") as client:
        with pytest.raises(JenkinsAuthError) as caught:
            await client.whoami()
    assert caught.value.status == 401 and "not-the-token" not in str(caught.value)


async def test_user_without_permission_is_auth_error(fake: FakeJenkins) -> None:
    fake.add_user("viewer", "viewer-token", allowed=False)
    async with JenkinsClient(fake.url, "viewer", "viewer-token") as client:
        with pytest.raises(JenkinsAuthError) as caught:
            await client.trigger("plain", {})
    assert caught.value.status == 403 and "viewer" in str(caught.value)


async def test_unknown_job_build_and_queue_item_are_not_found(client: JenkinsClient) -> None:
    with pytest.raises(JenkinsNotFound, match="no job 'nope'"):
        await client.trigger("nope", {"A": "1"})
    with pytest.raises(JenkinsNotFound, match="no build #7 of job 'plain'"):
        await client.build("plain", 7)
    with pytest.raises(JenkinsNotFound):
        await client.queue_item(999)
    with pytest.raises(JenkinsNotFound):
        await client.recent_builds("team/nope")


async def test_disabled_job_is_refused(fake: FakeJenkins, client: JenkinsClient) -> None:
    fake.set_disabled("deploy-web")
    with pytest.raises(JenkinsJobDisabled, match="'deploy-web' is disabled") as caught:
        await client.trigger("deploy-web", {"VERSION": "1"})
    assert caught.value.status == 409


async def test_parameterized_job_without_parameters_is_bad_request(client: JenkinsClient) -> None:
    with pytest.raises(JenkinsBadRequest, match="takes parameters") as caught:
        await client.trigger("deploy-web", {})
    assert caught.value.status == 400


async def test_parameters_for_job_without_parameters_is_bad_request(
    client: JenkinsClient,
) -> None:
    with pytest.raises(JenkinsBadRequest, match="takes no parameters"):
        await client.trigger("plain", {"X": "1"})


async def test_identical_queued_parameters_raise_already_queued(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.hold_queue("deploy-web")
    first = await client.trigger("deploy-web", {"VERSION": "5"})
    with pytest.raises(JenkinsAlreadyQueued) as caught:
        await client.trigger("deploy-web", {"VERSION": "5"})
    assert caught.value.queue_url == first
    assert caught.value.queue_number == queue_number_from_url(first)
    assert fake.count("/queue/item/") == 0  # the 303 was not followed
    assert await client.trigger("deploy-web", {"VERSION": "6"}) != first


# -- crumbs -----------------------------------------------------------------------


async def test_crumb_is_fetched_once_and_sent_with_posts(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    await client.trigger("plain", {})
    await client.trigger("deploy-web", {"VERSION": "1"})
    assert fake.count("/crumbIssuer/api/json") == 1
    assert fake.count(method="POST") == 2


async def test_jenkins_without_crumbs_is_used_without_them() -> None:
    async with FakeJenkins(token=TOKEN, crumbs=False) as fake:
        fake.add_job("plain")
        async with JenkinsClient(fake.url, "admin", TOKEN) as client:
            build = await run(client, "plain", {})
    assert build.result == "SUCCESS"
    assert fake.count("/crumbIssuer/api/json") == 1  # the 404 is remembered


async def test_new_crumb_after_jenkins_restart_is_fetched_again(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    await client.trigger("plain", {})
    fake.rotate_crumb()
    await client.trigger("deploy-web", {"VERSION": "1"})
    assert fake.count("/crumbIssuer/api/json") == 2
    assert fake.count("/job/deploy-web/buildWithParameters") == 2  # refused once, then sent


# -- outages ----------------------------------------------------------------------


async def test_jenkins_down_is_database_outage_until_it_comes_back(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    assert await client.whoami() == "admin"
    await fake.go_down()
    with pytest.raises(JenkinsUnreachable, match="Cannot connect"):
        await client.whoami()
    with pytest.raises(JenkinsUnreachable):
        await client.trigger("plain", {})
    await fake.come_up()
    assert await client.whoami() == "admin"


async def test_slow_jenkins_times_out_as_unreachable(fake: FakeJenkins) -> None:
    fake.slow(3.0)
    async with JenkinsClient(fake.url, "admin", TOKEN, timeout=0.3) as client:
        began = time.monotonic()
        with pytest.raises(JenkinsUnreachable, match=r"did not answer within 0\.3 s"):
            await client.running_builds()
        assert time.monotonic() - began < 2.0
        fake.slow(0)
        assert await client.whoami() == "admin"


async def test_closed_client_refuses_calls(fake: FakeJenkins) -> None:
    client = JenkinsClient(fake.url, "admin", TOKEN)
    client.close()
    client.close()
    with pytest.raises(JenkinsError, match="closed"):
        await client.whoami()


# -- stopping and cancelling ---------------------------------------------------------


async def test_stop_while_building_ends_aborted(fake: FakeJenkins, client: JenkinsClient) -> None:
    fake.hold("deploy-web")
    item = await started(client, await client.trigger("deploy-web", {"VERSION": "1"}))
    number = item.build_number or 0
    assert (await client.build("deploy-web", number)).building

    await client.stop("deploy-web", number)
    build = await finished(client, "deploy-web", number)
    assert build.result == "ABORTED"
    assert "Aborted by admin" in await client.console_tail("deploy-web", number)
    await client.stop("deploy-web", number)  # already finished: still fine
    assert (await client.build("deploy-web", number)).result == "ABORTED"
    with pytest.raises(JenkinsNotFound):
        await client.stop("deploy-web", 99)


async def test_cancel_waiting_queue_item(fake: FakeJenkins, client: JenkinsClient) -> None:
    fake.hold_queue("plain")
    number = queue_number_from_url(await client.trigger("plain", {})) or 0
    assert await client.cancel_queue_item(number) is True

    item = await client.queue_item(number)
    assert item.cancelled and not item.waiting and item.build_number is None
    assert await client.cancel_queue_item(number) is False
    assert await client.cancel_queue_item(12345) is False
    assert fake.job("plain").builds == {}


# -- polling many builds ----------------------------------------------------------------


async def test_running_builds_lists_100_builds_in_one_request(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.hold("deploy-web")
    fake.hold("team/app/deploy")  # a pipeline job: its builds run on one-off executors
    await asyncio.gather(
        *(client.trigger("deploy-web", {"VERSION": str(i)}) for i in range(60)),
        *(client.trigger("team/app/deploy", {"RUN_ID": str(i)}) for i in range(40)),
    )

    async def all_running() -> bool:
        return len(await client.running_builds()) == 100

    await eventually(all_running)
    before = len(fake.requests)
    running = await client.running_builds()
    assert len(fake.requests) - before == 1
    assert sorted(b.number for b in running if b.job == "deploy-web") == list(range(1, 61))
    assert sorted(b.number for b in running if b.job == "team/app/deploy") == list(range(1, 41))

    fake.release("deploy-web", "SUCCESS")
    fake.release("team/app/deploy", "FAILURE")
    assert await client.running_builds() == []


# -- console and job list ----------------------------------------------------------------


async def test_progressive_text_follows_the_console_until_the_end(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.hold("plain")
    number = (await started(client, await client.trigger("plain", {}))).build_number or 0
    fake.append_console("plain", number, "step one")

    first = await client.progressive_text("plain", number)
    assert first.more and first.text.endswith("step one\n")
    assert first.next_start == len(first.text.encode())
    fake.append_console("plain", number, "step twö")
    second = await client.progressive_text("plain", number, first.next_start)
    assert second.more and second.text == "step twö\n"

    fake.release("plain", "FAILURE")
    last = await client.progressive_text("plain", number, second.next_start)
    assert not last.more and last.text == "Finished: FAILURE\n"
    assert last.next_start == second.next_start + len(last.text)


async def test_console_tail_keeps_the_last_lines(fake: FakeJenkins, client: JenkinsClient) -> None:
    fake.script(
        "plain", result="FAILURE", duration=0, console="\n".join(f"line {i}" for i in range(500))
    )
    build = await run(client, "plain", {})
    tail = await client.console_tail("plain", build.number, max_lines=3)
    assert tail == "line 498\nline 499\nFinished: FAILURE"
    assert await client.console_tail("plain", build.number, max_lines=0) == ""


async def test_list_jobs_with_folders_and_parameters(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.add_job("a/b/c/d/e/f/g/h/deep", params=[("FLAG", "boolean", False)])
    fake.set_disabled("plain")
    jobs = {job.full_name: job for job in await client.list_jobs()}

    assert sorted(jobs) == ["a/b/c/d/e/f/g/h/deep", "deploy-web", "plain", "team/app/deploy"]
    assert jobs["deploy-web"].parameters == [
        ParamDef("VERSION", "string", "1.0"),
        ParamDef("ENV", "choice", "staging", ("staging", "production")),
    ]
    assert jobs["a/b/c/d/e/f/g/h/deep"].parameters == [ParamDef("FLAG", "boolean", "false")]
    assert jobs["team/app/deploy"].url == f"{fake.url}job/team/job/app/job/deploy/"
    assert not jobs["plain"].buildable and jobs["deploy-web"].buildable
    assert fake.count("/api/json") == 1 and fake.count("/job/a/job/b/job/c/job/d/job/e/") == 1


# -- secrets ----------------------------------------------------------------------------


async def test_token_never_appears_in_any_error(fake: FakeJenkins) -> None:
    errors: list[JenkinsError] = []

    async def collect(call: Awaitable[object]) -> None:
        try:
            await call
        except JenkinsError as exc:
            errors.append(exc)

    async with JenkinsClient(fake.url, "admin", TOKEN, timeout=0.3) as good:
        await collect(good.trigger("nope", {"SECRET": TOKEN}))
        await collect(good.trigger("deploy-web", {}))
        fake.set_disabled("plain")
        await collect(good.trigger("plain", {}))
        fake.slow(1.0)
        await collect(good.whoami())
        fake.slow(0)
    async with JenkinsClient(fake.url, "admin", TOKEN + "-old") as stale:
        await collect(stale.whoami())
    with_userinfo = fake.url.replace("http://", f"http://admin:{TOKEN}@")
    await fake.go_down()
    async with JenkinsClient(with_userinfo, "admin", TOKEN) as down:
        await collect(down.build("team/app/deploy", 1))

    assert len(errors) == 6
    for exc in errors:
        text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)
        assert TOKEN not in text, text
        assert exc.__cause__ is None and exc.__context__ is None


# -- the fake itself, for synchronous code -----------------------------------------------


def test_fake_in_its_own_thread_answers_python_jenkins_like_jenkins() -> None:
    fake = FakeJenkins()
    fake.add_job("deploy-web", params=DEPLOY_PARAMS)
    fake.add_job("team/app/deploy")
    fake.hold_queue("deploy-web")
    fake.start_in_thread()
    try:
        server = jenkins.Jenkins(fake.url, "admin", "jtoken", timeout=5)
        assert server.get_version() == "2.462"
        number = server.build_job("deploy-web", {"VERSION": "7"})
        assert server.get_queue_item(number)["why"] == "Waiting for next available executor"
        # Jenkins >= 2.308 answers 303 here; python-jenkins follows it into a 404.
        with pytest.raises(jenkins.NotFoundException):
            server.build_job("deploy-web", {"VERSION": "7"})
        jobs = {j["fullname"]: j for j in server.get_all_jobs()}
        assert sorted(jobs) == ["deploy-web", "team", "team/app", "team/app/deploy"]
        assert jobs["deploy-web"]["color"] == "notbuilt" and "jobs" in jobs["team/app"]
        server.build_job("team/app/deploy")
        info = server.get_job_info("team/app/deploy")
        assert info["fullName"] == "team/app/deploy" and info["nextBuildNumber"] == 2
        fake.run_sync(fake.go_down())
        with pytest.raises(requests.ConnectionError):  # python-jenkins does not wrap it
            server.get_whoami()
    finally:
        fake.stop_in_thread()


async def test_job_reads_parameters_and_next_build_number_in_one_request(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    await started(client, await client.trigger("deploy-web", {"VERSION": "2"}))
    before = len(fake.requests)
    job = await client.job("team/app/deploy")
    assert len(fake.requests) == before + 1
    assert (job.full_name, job.buildable, job.next_build_number) == ("team/app/deploy", True, 1)
    assert [p.name for p in job.parameters] == ["RUN_ID"]
    assert (await client.job("deploy-web")).next_build_number == 2
    with pytest.raises(JenkinsNotFound, match=r"Jenkins has no job 'nope'\."):
        await client.job("nope")


async def test_queue_lists_every_waiting_item_in_one_request(
    fake: FakeJenkins, client: JenkinsClient
) -> None:
    fake.hold_queue("deploy-web")
    await client.trigger("deploy-web", {"VERSION": "2"})
    await client.trigger("deploy-web", {"VERSION": "3"})
    before = len(fake.requests)
    items = await client.queue()
    assert len(fake.requests) == before + 1
    assert sorted(i.parameters["VERSION"] for i in items) == ["2", "3"]
    assert all(i.waiting for i in items)
