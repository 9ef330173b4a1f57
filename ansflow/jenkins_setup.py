"""Plugs Jenkins (tool registration, executor, poller, webhook) into the server.

Start: the ``jenkins`` tool is created or updated from ``JENKINS_URL`` /
``JENKINS_USER`` / ``JENKINS_API_TOKEN``; every tool's token goes to the masker;
an ``AsyncIOScheduler`` (needs the running loop, so it starts here) gets one
poll job per tool, a health-check job and a job-sync job. Stop: triggering
tasks and polls end first, then the scheduler, then the clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ansflow.wiring import Core
from api.jenkins_hook import ROUTE, hook_handler
from engine.executors.jenkins import JenkinsExecutor
from engine.jenkins.errors import JenkinsError
from engine.jenkins.follow import Follower
from engine.jenkins.logs import jenkins_console
from engine.jenkins.poller import JenkinsPoller
from engine.jenkins.sync import sync_jobs
from engine.jenkins.tools import DEFAULT_TOOL, ToolClients, jenkins_tools, register_tool
from storage.leases import take_lease
from storage.models import StepRun

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 60.0
SYNC_INTERVAL = 900.0
SYNC_FIRST_AFTER = 30.0


@dataclass
class JenkinsService:
    clients: ToolClients
    follower: Follower
    executor: JenkinsExecutor
    poller: JenkinsPoller
    scheduler: AsyncIOScheduler | None = None
    polled_tools: set[int] = field(default_factory=set)

    def ensure_poll_jobs(self, tool_ids: list[int]) -> None:
        assert self.scheduler is not None
        for tool_id in tool_ids:
            if tool_id in self.polled_tools:
                continue
            self.scheduler.add_job(
                self.poller.poll_tool,
                "interval",
                args=[tool_id],
                seconds=self.poller.interval,
                id=f"jenkins-poll-{tool_id}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),
            )
            self.polled_tools.add(tool_id)

    async def health_and_tools(self) -> None:
        """The health check; it also starts polling tools added since the start."""
        self.ensure_poll_jobs([tool.id for tool in await jenkins_tools()])
        await self.poller.check_health()

    async def sync_all(self) -> None:
        owner = self.poller.owner
        if owner is not None and not await take_lease("jenkins-sync", owner, SYNC_INTERVAL * 0.9):
            return  # another replica synced within this interval
        for tool in await jenkins_tools():
            if tool.status != "active":
                continue
            try:
                log.info("job sync: %s", await sync_jobs(tool, self.clients.client_for(tool)))
            except JenkinsError as exc:
                log.warning("job sync of tool %s: %s", tool.name, exc)


JENKINS: web.AppKey[JenkinsService] = web.AppKey("jenkins", JenkinsService)


def setup_jenkins(app: web.Application, core: Core) -> None:
    clients = ToolClients(core.masker)
    follower = Follower(core.engine, core.masker)
    executor = JenkinsExecutor(follower, clients)
    poller = JenkinsPoller(follower, clients, core.settings.poll_interval, owner=core.replica.id)
    service = JenkinsService(clients, follower, executor, poller)
    app[JENKINS] = service
    core.engine.register(executor, idle=executor.idle)

    async def read_console(step: StepRun) -> str | None:
        return await jenkins_console(clients, core.masker, step)

    core.services.jenkins_console = read_console
    hook_secret = core.settings.jenkins_hook_secret
    secret = hook_secret.get_secret_value() if hook_secret is not None else None
    app.router.add_post(ROUTE, hook_handler(secret, follower, clients))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await _register_from_settings(core)
        tools = await jenkins_tools()
        for tool in tools:
            core.masker.add(tool.token)
        scheduler = AsyncIOScheduler(timezone=UTC)
        service.scheduler = scheduler
        scheduler.start()
        service.ensure_poll_jobs([tool.id for tool in tools])
        now = datetime.now(UTC)
        scheduler.add_job(
            service.health_and_tools,
            "interval",
            seconds=HEALTH_INTERVAL,
            id="jenkins-health",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=now,
        )
        scheduler.add_job(
            service.sync_all,
            "interval",
            seconds=SYNC_INTERVAL,
            id="jenkins-sync",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=now + timedelta(seconds=SYNC_FIRST_AFTER),
        )
        yield
        scheduler.pause()
        await executor.shutdown()
        await poller.close()
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        clients.close()

    app.cleanup_ctx.append(lifecycle)


async def _register_from_settings(core: Core) -> None:
    settings = core.settings
    if not settings.jenkins_url:
        return
    token = settings.jenkins_api_token.get_secret_value() if settings.jenkins_api_token else ""
    core.masker.add(token)
    await register_tool(DEFAULT_TOOL, settings.jenkins_url, settings.jenkins_user or "", token)
