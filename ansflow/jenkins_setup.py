"""Plugs Jenkins (tool registration, executor, poller, webhook) into the server."""

from __future__ import annotations

from aiohttp import web

from ansflow.wiring import Core


def setup_jenkins(app: web.Application, core: Core) -> None:
    return None
