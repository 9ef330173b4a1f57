"""The one async port around the blocking python-jenkins client.

Every call runs on this client's own single worker thread: python-jenkins
keeps its crumb and HTTP session in the client object without a lock, so one
client is used by one thread at a time. The engine sees only the dataclasses in
`engine.jenkins.models` and the errors in `engine.jenkins.errors`; a change
violates this when a python-jenkins or requests exception (or one chained to
ours) can reach a caller.

Request budget (the poller relies on it): `running_builds()` is one request for
every build in progress; `recent_builds()` is one request per job. The first
call of a client also fetches the CSRF crumb.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import jenkins  # type: ignore[import-untyped, unused-ignore]
import requests

from engine.jenkins.errors import JenkinsError
from engine.jenkins.failures import (
    CRUMB_REFUSED,
    FAILURES,
    Doing,
    Failures,
    Redirected,
    Unexpected,
    http_failure,
    refuse_redirect,
)
from engine.jenkins.models import (
    BuildInfo,
    JobInfo,
    ProgressiveText,
    QueueItem,
    RunningBuild,
    job_name_from_url,
    job_path,
    parse_build,
    parse_job,
    parse_queue_item,
    parse_running,
    queue_number_from_url,
    walk_jobs,
)

T = TypeVar("T")

_RUNNING_TREE = (
    "computer[executors[currentExecutable[url,number]],"
    "oneOffExecutors[currentExecutable[url,number]]]"
)
_BUILDS_TREE = (
    "builds[number,url,building,result,duration,queueId,actions[parameters[name,value]]]{0,%d}"
)
_JOB_FIELDS = (
    "name,url,buildable,"
    "property[parameterDefinitions[name,type,choices,defaultParameterValue[value]]]"
)
_FOLDER_LEVELS = 6  # folder levels fetched per request, as python-jenkins get_all_jobs does
_MAX_FOLDER_REQUESTS = 200


class JenkinsClient:
    def __init__(self, url: str, user: str, token: str, timeout: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("The Jenkins URL must start with http:// or https://")
        self._server = url if url.endswith("/") else url + "/"
        parts = urlsplit(self._server)
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.user = user
        secrets = tuple(s for s in (token, parts.password) if s)
        self._failures = Failures(self._server, self.url, user, timeout, secrets)
        self._deadline = timeout * 3 + 5  # crumb + call + slack for the thread queue
        self._jenkins = jenkins.Jenkins(self._server, user, token, timeout=timeout)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jenkins-client")
        self._closed = False

    async def __aenter__(self) -> JenkinsClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Refuse new calls; calls already submitted finish, then the session closes.

        Nothing is cancelled: a pending call's caller must not see a CancelledError
        it did not ask for. Does not wait for the worker thread.
        """
        if not self._closed:
            self._closed = True
            self._executor.submit(self._jenkins._session.close)
            self._executor.shutdown(wait=False)

    # -- calls ----------------------------------------------------------------

    async def whoami(self) -> str:
        """The user id Jenkins authenticated us as (a cheap credentials check)."""
        data = await self._call(Doing("checking the credentials"), self._jenkins.get_whoami)
        return self._parse(Doing("checking the credentials"), _user_id, data)

    async def trigger(self, job: str, params: Mapping[str, str]) -> str:
        """Queue a build; returns the queue item URL (`…/queue/item/N/`).

        No parameters: `POST …/build`; otherwise `…/buildWithParameters?K=V…`.
        Raises `JenkinsAlreadyQueued` (with its `queue_url`) when Jenkins
        answers 303 because an identical parameter set is already waiting.
        """
        doing = Doing(f"starting job '{job}'", f"Jenkins has no job '{job}'.", job)
        return await self._call(doing, lambda: self._trigger_sync(job, dict(params)))

    async def queue_item(self, number: int) -> QueueItem:
        doing = Doing(
            f"reading queue item {number}",
            f"Jenkins no longer knows queue item {number} (it forgets items about "
            "5 minutes after they leave the queue).",
        )
        data = await self._call(doing, lambda: self._jenkins.get_queue_item(number))
        return self._parse(doing, parse_queue_item, data)

    async def build(self, job: str, number: int) -> BuildInfo:
        doing = Doing(f"reading build #{number} of job '{job}'", _no_build(job, number), job)
        data = await self._call(doing, lambda: self._jenkins.get_build_info(job, number))
        return self._parse(doing, parse_build, data)

    async def running_builds(self) -> list[RunningBuild]:
        """Every build in progress on every node, in one request."""
        doing = Doing("listing the running builds")
        data = await self._call(
            doing, lambda: self._get_json(f"computer/api/json?tree={_RUNNING_TREE}")
        )
        return self._parse(doing, parse_running, data)

    async def recent_builds(self, job: str, limit: int = 50) -> list[BuildInfo]:
        """The job's latest builds, newest first, with parameters, in one request."""
        if limit <= 0:
            return []
        doing = Doing(f"listing the builds of job '{job}'", f"Jenkins has no job '{job}'.", job)
        path = f"{job_path(job)}api/json?tree={_BUILDS_TREE % limit}"
        data = await self._call(doing, lambda: self._get_json(path))
        return self._parse(doing, lambda d: [parse_build(b) for b in d.get("builds") or ()], data)

    async def queue(self) -> list[QueueItem]:
        """Every item waiting in the queue, in one request."""
        doing = Doing("reading the queue")
        data = await self._call(doing, self._jenkins.get_queue_info)
        return self._parse(doing, lambda d: [parse_queue_item(i) for i in d], data)

    async def find_queued(self, job: str, params: Mapping[str, str]) -> QueueItem | None:
        """The newest waiting item of `job` whose parameters include all of `params`."""
        items = await self.queue()
        wanted = job.strip("/")
        matches = [
            item
            for item in items
            if item.job_url is not None
            and job_name_from_url(item.job_url) == wanted
            and all(item.parameters.get(k) == v for k, v in params.items())
        ]
        return max(matches, key=lambda item: item.number, default=None)

    async def stop(self, job: str, number: int) -> None:
        """Ask Jenkins to abort a build; it turns ABORTED a moment later (no-op if done)."""
        doing = Doing(f"stopping build #{number} of job '{job}'", _no_build(job, number), job)
        await self._call(doing, lambda: self._jenkins.stop_build(job, number))

    async def cancel_queue_item(self, number: int) -> bool:
        """Cancel a waiting item; False when it already left the queue (or never existed)."""
        return await self._call(
            Doing(f"cancelling queue item {number}"), lambda: self._cancel_sync(number)
        )

    async def console_tail(self, job: str, number: int, max_lines: int = 40) -> str:
        """The last `max_lines` lines of the build's console (read as a stream)."""
        if max_lines <= 0:
            return ""
        doing = Doing(
            f"reading the console of build #{number} of job '{job}'", _no_build(job, number)
        )
        return await self._call(doing, lambda: self._tail_sync(job, number, max_lines))

    async def progressive_text(self, job: str, number: int, start: int = 0) -> ProgressiveText:
        """Console output from byte `start`; ask again from `next_start` while `more`."""
        doing = Doing(
            f"reading the console of build #{number} of job '{job}'", _no_build(job, number)
        )
        return await self._call(doing, lambda: self._progressive_sync(job, number, start))

    async def job(self, job: str) -> JobInfo:
        """One job: buildable, next build number and parameter definitions, in one request."""
        doing = Doing(f"reading job '{job}'", f"Jenkins has no job '{job}'.", job)
        path = f"{job_path(job)}api/json?tree={_JOB_FIELDS},nextBuildNumber"
        data = await self._call(doing, lambda: self._get_json(path))
        return self._parse(doing, lambda d: parse_job(job.strip("/"), d), data)

    async def list_jobs(self) -> list[JobInfo]:
        """Every job (not folders), with folders as `a/b/c`, sorted by name."""
        return await self._call(Doing("listing the jobs"), self._list_jobs_sync)

    # -- worker thread ------------------------------------------------------------

    def _trigger_sync(self, job: str, params: dict[str, str]) -> str:
        url = self._jenkins.build_job_url(job, params or None)
        request = requests.Request("POST", url, hooks={"response": [refuse_redirect]})
        response: requests.Response = self._jenkins.jenkins_request(request)
        location = urljoin(self._server, response.headers.get("Location", ""))
        if queue_number_from_url(location) is None:
            raise Unexpected(f"no queue item in the answer (HTTP {response.status_code})")
        return location

    def _get_json(self, path: str) -> Any:
        return json.loads(self._jenkins.jenkins_open(requests.Request("GET", self._server + path)))

    def _cancel_sync(self, number: int) -> bool:
        url = f"{self._server}queue/cancelItem?id={int(number)}"
        request = requests.Request("POST", url, headers={"Referer": self._server})
        try:
            self._jenkins.jenkins_open(request)
        except jenkins.NotFoundException:
            return False  # left the queue already: Jenkins says "Unknown item"
        return True

    def _tail_sync(self, job: str, number: int, max_lines: int) -> str:
        url = f"{self._server}{job_path(job)}{int(number)}/consoleText"
        response = self._jenkins.jenkins_request(requests.Request("GET", url), stream=True)
        with response:
            lines = deque(
                (line.decode("utf-8", "replace") for line in response.iter_lines()),
                maxlen=max_lines,
            )
        return "\n".join(lines)

    def _progressive_sync(self, job: str, number: int, start: int) -> ProgressiveText:
        url = f"{self._server}{job_path(job)}{int(number)}/logText/progressiveText"
        request = requests.Request("GET", url, params={"start": str(max(start, 0))})
        response = self._jenkins.jenkins_request(request)
        body: bytes = response.content
        size = response.headers.get("X-Text-Size", "")
        return ProgressiveText(
            text=body.decode("utf-8", "replace"),
            next_start=int(size) if size.isdigit() else max(start, 0) + len(body),
            more=response.headers.get("X-More-Data", "").lower() == "true",
        )

    def _list_jobs_sync(self) -> list[JobInfo]:
        tree = "jobs"
        for _ in range(_FOLDER_LEVELS):
            tree = f"jobs[{_JOB_FIELDS},{tree}]"
        try:
            found, pending = walk_jobs("", self._get_json(f"api/json?tree={tree}")["jobs"])
            for _ in range(_MAX_FOLDER_REQUESTS):
                if not pending:
                    break
                folder = pending.pop()
                data = self._get_json(f"{job_path(folder)}api/json?tree={tree}")
                more, deeper = walk_jobs(folder, data["jobs"])
                found += more
                pending += deeper
        except (KeyError, TypeError, AttributeError) as exc:
            raise Unexpected("the job list has an unknown shape") from exc
        return sorted(found, key=lambda j: j.full_name)

    def _attempt(self, doing: Doing, fn: Callable[[], T]) -> T | JenkinsError:
        """Run `fn`; turn any failure into our error (returned, so nothing is chained)."""
        for first in (True, False):
            try:
                return fn()
            except Redirected as exc:
                return self._failures.redirected(doing, exc)
            except FAILURES as exc:
                status, body = http_failure(exc)
                if not (first and status == 403 and CRUMB_REFUSED in body):
                    return self._failures.map(doing, exc)
                self._jenkins.crumb = None  # Jenkins restarted: fetch a new crumb, once
        raise AssertionError("unreachable")

    # -- event loop side --------------------------------------------------------

    async def _call(self, doing: Doing, fn: Callable[[], T]) -> T:
        if self._closed:
            raise JenkinsError("The Jenkins client is closed.")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._attempt, doing, fn)
        try:
            outcome: T | JenkinsError = await asyncio.wait_for(future, self._deadline)
        except TimeoutError:
            outcome = self._failures.unreachable(
                f"Jenkins at {self.url} did not answer within {self._deadline:g} s "
                f"while {doing.what}.",
                f"no answer within {self._deadline:g} s",
            )
        if isinstance(outcome, JenkinsError):
            raise outcome  # outside any except: nothing gets chained to it
        return outcome

    def _parse(self, doing: Doing, parse: Callable[[Any], T], data: Any) -> T:
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        raise self._failures.error(
            JenkinsError, f"Jenkins gave an answer we cannot read while {doing.what}."
        )


def _user_id(data: Any) -> str:
    return str(data["id"])


def _no_build(job: str, number: int) -> str:
    return f"Jenkins has no build #{number} of job '{job}'."
