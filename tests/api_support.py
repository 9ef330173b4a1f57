"""Helpers for REST API tests: tokens, a small JSON client over aiohttp, pipelines."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from tests.helpers import RunningServer, make_settings, serving, write_pipeline

SECRET = "test-secret-that-is-at-least-32-bytes-long"
ADMIN = "UADMIN"

SIMPLE = """\
name: simple
parameters:
  env: {choices: [staging, production], default: staging}
  version: {default: "1.0", pattern: '^[0-9.]+$'}
steps:
  - name: build
    run: echo "building $version for $env"
  - name: test
    run: echo tested
"""

RESTRICTED = """\
name: restricted
allowed_users: [U111]
steps:
  - name: only
    run: echo restricted
"""

SLOW = """\
name: slow
steps:
  - name: wait
    run: sleep 30
  - name: after
    run: echo after
"""


def make_token(user: str, ttl: int = 3600, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user, "iat": now, "exp": now + ttl, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: Any


@dataclass
class Api:
    server: RunningServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def call(
        self, method: str, path: str, user: str | None = "U222",
        headers: dict[str, str] | None = None, **kwargs: Any,
    ) -> Reply:
        sent = dict(bearer(user) if user is not None else {})
        sent.update(headers or {})
        async with self.http.request(method, self.url + path, headers=sent, **kwargs) as resp:
            text = await resp.text()
            body: Any = None
            if resp.content_type == "application/json":
                body = await resp.json()
            return Reply(resp.status, body, text, resp.headers)

    async def wait_finished(self, run_id: int, timeout: float = 30) -> Any:
        await self.server.core.engine.wait_finished(run_id, timeout=timeout)
        reply = await self.call("GET", f"/api/v1/cicd/executions/{run_id}/", user=ADMIN)
        return reply.body


def write_standard(pipelines_dir: Path) -> None:
    write_pipeline(pipelines_dir, "simple", SIMPLE)
    write_pipeline(pipelines_dir, "restricted", RESTRICTED)
    write_pipeline(pipelines_dir, "slow", SLOW)


@asynccontextmanager
async def api_server(
    database_url: str, pipelines_dir: Path, **env: str
) -> AsyncIterator[Api]:
    settings_env = {"ANSFLOW_JWT_SECRET": SECRET, "ANSFLOW_ADMINS": ADMIN, **env}
    settings_env = {k: v for k, v in settings_env.items() if v is not None}
    settings = make_settings(database_url, pipelines_dir, **settings_env)
    async with serving(settings) as server, aiohttp.ClientSession() as http:
        yield Api(server, http)
