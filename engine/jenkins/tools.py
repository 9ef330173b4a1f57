"""CI/CD tools: storing them, and one Jenkins client per tool.

A tool's token is stored (the service needs it) but never logged, posted or
returned: it is handed to the masker the moment a tool is loaded, so any text a
step shows has it replaced by ``***``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.jenkins.client import JenkinsClient
from engine.masking import Masker
from storage.models import CICDTool
from storage.runs import now

log = logging.getLogger(__name__)

DEFAULT_TOOL = "jenkins"
ACTIVE, INACTIVE = "active", "inactive"


class ToolMissing(Exception):
    """No such CI/CD tool; ``str()`` is fit to show a user."""


async def register_tool(name: str, url: str, user: str, token: str) -> CICDTool:
    """Create the tool, or update its address and credentials (its status is kept)."""
    tool = await CICDTool.filter(name=name).first()
    if tool is None:
        return await CICDTool.create(
            name=name, kind="jenkins", url=url, username=user, token=token, status=ACTIVE
        )
    if (tool.url, tool.username, tool.token) != (url, user, token):
        await CICDTool.filter(id=tool.id).update(
            url=url, username=user, token=token, updated_at=now()
        )
        tool.url, tool.username, tool.token = url, user, token
    return tool


async def read_tool(name: str) -> CICDTool | None:
    return await CICDTool.filter(name=name).first()


async def read_tool_by_id(tool_id: int) -> CICDTool | None:
    return await CICDTool.filter(id=tool_id).first()


async def jenkins_tools() -> list[CICDTool]:
    return list(await CICDTool.filter(kind="jenkins").order_by("id"))


async def mark_health(tool_id: int, ok: bool, error: str | None = None) -> None:
    await CICDTool.filter(id=tool_id).update(
        last_health_at=now(), last_health_ok=ok, last_health_error=None if ok else error
    )


@dataclass
class _Cached:
    key: tuple[str, str, str]
    client: JenkinsClient


class ToolClients:
    """One `JenkinsClient` per tool, rebuilt when the tool's address or credentials change."""

    def __init__(self, masker: Masker, timeout: float = 10.0) -> None:
        self._masker = masker
        self._timeout = timeout
        self._clients: dict[int, _Cached] = {}

    def client_for(self, tool: CICDTool) -> JenkinsClient:
        self._masker.add(tool.token)
        key = (tool.url, tool.username, tool.token)
        cached = self._clients.get(tool.id)
        if cached is not None and cached.key == key:
            return cached.client
        if cached is not None:
            cached.client.close()
        client = JenkinsClient(tool.url, tool.username, tool.token, timeout=self._timeout)
        self._clients[tool.id] = _Cached(key, client)
        return client

    async def by_name(self, name: str) -> tuple[CICDTool, JenkinsClient]:
        tool = await read_tool(name)
        if tool is None:
            raise ToolMissing(f"There is no CI/CD tool named '{name}'.")
        return tool, self.client_for(tool)

    async def by_id(self, tool_id: int) -> tuple[CICDTool, JenkinsClient]:
        tool = await read_tool_by_id(tool_id)
        if tool is None:
            raise ToolMissing(f"There is no CI/CD tool with id {tool_id}.")
        return tool, self.client_for(tool)

    def close(self) -> None:
        for cached in self._clients.values():
            cached.client.close()
        self._clients.clear()
