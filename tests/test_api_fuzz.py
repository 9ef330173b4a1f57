"""Schemathesis against the OpenAPI document: no input gives a 5xx or shows a token.

The real server runs in a thread with its own event loop; schemathesis (which
sends requests synchronously) drives it from the test's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from api.openapi import document
from storage.models import CICDTool
from tests.api_support import ADMIN, SECRET, make_token, write_standard
from tests.helpers import make_settings, serving

EXAMPLES = 25


@dataclass
class Background:
    url: str = ""
    routes: list[tuple[str, str]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@pytest.fixture
def live_server(sqlite_url: str, pipelines_dir: Path) -> Iterator[Background]:
    write_standard(pipelines_dir)
    state = Background()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        env = {"ANSFLOW_JWT_SECRET": SECRET, "ANSFLOW_ADMINS": ADMIN}
        async with serving(make_settings(sqlite_url, pipelines_dir, **env)) as server:
            await CICDTool.create(name="ci", url="http://ci.example", token="tok-HIDDEN")
            state.url = server.url
            state.routes = routes_of(server.app)
            state.ready.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by the test
            state.error = exc
            state.ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert state.ready.wait(60), "server did not start"
    assert state.error is None, state.error
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


def routes_of(app: web.Application) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1") and route.method != "HEAD":
            found.add((route.method.lower(), path))
    return sorted(found)


def test_openapi_document_matches_the_routes(live_server: Background) -> None:
    documented = sorted(
        (method, path) for path, item in document()["paths"].items() for method in item
    )
    assert documented == live_server.routes


@pytest.mark.parametrize("user", ["U222", ADMIN])
def test_schemathesis_finds_no_server_error(live_server: Background, user: str) -> None:
    schema = schemathesis.openapi.from_dict(document())
    token = make_token(user)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: dict[int, int] = {}
    assert len(operations) == len(live_server.routes)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @given(case=strategy)
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=live_server.url, headers=headers, timeout=30)
                statuses[response.status_code // 100] = (
                    statuses.get(response.status_code // 100, 0) + 1
                )
                assert response.status_code < 500, (case.method, case.formatted_path,
                                                    case.body, response.text)
                assert token not in response.text
                assert "tok-HIDDEN" not in response.text
                if response.status_code >= 400:
                    assert set(response.json()) >= {"error", "detail"}

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): positive cases cover it.
                assert mode == GenerationMode.NEGATIVE
    assert sum(statuses.values()) > 100
    assert statuses.get(2, 0) > 0 and statuses.get(4, 0) > 0, statuses
