"""Fuzzing every route of the OpenAPI document: no input gives a 5xx or shows a token.

On SQLite and PostgreSQL (which refuses NUL and text that is not UTF-8, where
SQLite stores anything). Three layers:

- schemathesis generates valid and invalid requests from the document (NUL
  characters included) for every operation, the hook routes too;
- a sweep sends each nasty value (NUL, bytes of a surrogate, bytes that are
  not UTF-8, huge and negative numbers, wrong JSON types, 100,000-deep
  nesting, 2 MB bodies) in every path and query parameter, every body
  property and as the whole body of every operation;
- hypothesis builds JSON bodies out of lone surrogates and control characters.

The real server runs in a thread with its own event loop; the fuzzers (which
send requests synchronously) drive it from the test's thread.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from api.openapi import document
from storage.models import CICDTool
from tests.api_support import ADMIN, SECRET, make_token, write_standard
from tests.helpers import make_settings, serving

EXAMPLES = 25
HOOK_SECRET = "fuzz-hook-secret"
# Documented before its route exists (another change adds it); nothing else may be.
PENDING_ROUTES = {("post", "/hooks/pipelines/{name}")}
HIDDEN = "tok-HIDDEN"


@dataclass
class Background:
    url: str = ""
    run_id: int = 0
    routes: list[tuple[str, str]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@pytest.fixture
def live_server(database_url: str, pipelines_dir: Path) -> Iterator[Background]:
    write_standard(pipelines_dir)
    state = Background()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        env = {
            "ANSFLOW_JWT_SECRET": SECRET,
            "ANSFLOW_ADMINS": ADMIN,
            "ANSFLOW_JENKINS_HOOK_SECRET": HOOK_SECRET,
        }
        async with serving(make_settings(database_url, pipelines_dir, **env)) as server:
            await CICDTool.create(name="ci", url="http://ci.example", token=HIDDEN)
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
    created = requests.post(
        f"{state.url}/api/v1/cicd/executions/",
        json={"pipeline": "simple"},
        headers=auth(ADMIN),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    state.run_id = created.json()["id"]
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def routes_of(app: web.Application) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(("/api/v1", "/hooks/")) and route.method != "HEAD":
            found.add((route.method.lower(), path))
    return sorted(found)


def operations_of(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((method, path) for path, item in doc["paths"].items() for method in item)


def check_answer(status: int, text: str, content_type: str, what: object, token: str) -> None:
    assert status < 500, (what, status, text[:500])
    assert token not in text
    assert HIDDEN not in text
    if status >= 400 and content_type.startswith("application/json"):
        assert set(json.loads(text)) >= {"error", "detail"}, (what, text[:300])


def test_openapi_document_matches_the_routes(live_server: Background) -> None:
    documented = set(operations_of(document()))
    served = set(live_server.routes)
    assert served <= documented, served - documented
    assert documented - served <= PENDING_ROUTES, documented - served
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if path != "/api/v1/openapi.json":
                assert "503" in operation["responses"], (method, path)


def fuzz_schema() -> dict[str, Any]:
    """The document, with the hook secret known so that valid cases reach the handler."""
    doc = copy.deepcopy(document())
    hook = doc["paths"]["/hooks/jenkins/{secret}"]["post"]
    hook["parameters"][0]["schema"] = {"enum": [HOOK_SECRET]}
    return doc


@pytest.mark.parametrize("user", ["U222", ADMIN])
def test_schemathesis_finds_no_server_error(live_server: Background, user: str) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_schema())
    schema.config.generation.update(allow_x00=True)
    token = make_token(user)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: dict[int, int] = {}
    assert len(operations) == len(operations_of(document()))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=live_server.url, headers=headers, timeout=30)
                kind = response.status_code // 100
                statuses[kind] = statuses.get(kind, 0) + 1
                check_answer(
                    response.status_code,
                    response.text,
                    response.headers.get("Content-Type", ""),
                    (case.method, case.formatted_path, case.query, case.body),
                    token,
                )

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): positive cases cover it.
                assert mode == GenerationMode.NEGATIVE
    assert sum(statuses.values()) > 100
    assert statuses.get(2, 0) > 0 and statuses.get(4, 0) > 0, statuses


# -- the sweep: each nasty value in every place -------------------------------------

# Already percent-encoded: sent as they are.
NASTY_URL_TEXT = [
    "a%00b",
    "%00",
    "%ED%A0%80",  # UTF-8 bytes of a lone surrogate
    "%FF%FE",
    "9" * 5000,
    "99999999999999999999",
    "-1",
    "0",
    "1.5",
    "1e999",
    "",
    "x" * 20_000,
    "%F0%9F%98%80",
    "%5B%5D",
]
DEEP_LIST = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
NASTY_JSON_VALUES = [
    b'"\\u0000"',
    b'"a\\u0000b"',
    b'"\\ud800"',
    b'"x\\udfff"',
    b'"\xed\xa0\x80"',
    b'"\xff"',
    b"1" + b"0" * 30,
    b"1" + b"0" * 5000,
    b"-1",
    b"0",
    b"1.5",
    b"1e999",
    b"-1e999",
    b"NaN",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b'{"\\u0000": "x"}',
    b'{"v": "\\ud800"}',
    b'"' + b"x" * 100_000 + b'"',
    b"[" * 50_000 + b"]" * 50_000,
]
NASTY_BODIES = [
    DEEP_LIST,
    DEEP_OBJECT,
    b"",
    b"{",
    b"\xff\xfe",
    b"null",
    b"[]",
    b'"text"',
    b"1e999",
    b"1" + b"0" * 5000,
    b'{"\\u0000": 1}',
    b'{"\\ud800": 1}',
]
HUGE_BODY = b'{"comment": "' + b"x" * 2_000_000 + b'"}'


def raw_call(url: str, method: str, target: str, body: bytes, headers: dict[str, str]) -> Any:
    """One HTTP/1.1 request with the target and body exactly as given; (status, type, text)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method.upper()} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method.lower() in ("post", "patch"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    content_type = ""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-type":
            content_type = value.strip()
    return status, content_type, rest.decode("utf-8", "replace")


def sweep_cases(live: Background) -> Iterator[tuple[str, str, bytes]]:
    """(method, target, body) for every operation with each nasty value in each place."""
    good = {"id": str(live.run_id), "secret": HOOK_SECRET, "name": "simple"}
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            params = operation.get("parameters", [])
            path_params = [p["name"] for p in params if p["in"] == "path"]
            query_params = [p["name"] for p in params if p["in"] == "query"]
            base = path
            for name in path_params:
                base = base.replace("{" + name + "}", good[name])
            for name in path_params:
                for value in NASTY_URL_TEXT:
                    target = path.replace("{" + name + "}", value or "x")
                    for other in path_params:
                        target = target.replace("{" + other + "}", good[other])
                    yield method, target, b"{}"
            for name in [*query_params, "unknown"]:
                for value in NASTY_URL_TEXT:
                    yield method, f"{base}?{name}={value}", b""
                    yield method, f"{base}?{value}=1", b""
            if "requestBody" not in operation:
                continue
            for body in NASTY_BODIES:
                yield method, base, body
            yield method, base, HUGE_BODY
            for prop in body_properties(doc, operation):
                for value in NASTY_JSON_VALUES:
                    yield method, base, b'{"pipeline": "simple", "' + prop + b'": ' + value + b"}"
                    yield method, base, b'{"' + prop + b'": ' + value + b"}"
                    inner = b'{"version": ' + value + b"}"
                    yield method, base, b'{"pipeline": "simple", "' + prop + b'": ' + inner + b"}"


def body_properties(doc: dict[str, Any], operation: dict[str, Any]) -> list[bytes]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    names = list(schema.get("properties", {})) or ["build"]
    return [name.encode() for name in names]


@pytest.mark.slow
def test_nasty_values_in_every_place_give_no_server_error(live_server: Background) -> None:
    token = make_token(ADMIN)
    headers = {"Authorization": f"Bearer {token}"}
    seen: dict[int, int] = {}
    count = 0
    for method, target, body in sweep_cases(live_server):
        status, content_type, text = raw_call(live_server.url, method, target, body, headers)
        seen[status] = seen.get(status, 0) + 1
        check_answer(status, text, content_type, (method, target[:120], body[:120]), token)
        if body is HUGE_BODY:
            assert status in (404, 405, 413), (method, target, status)
        count += 1
    assert count > 1000
    assert seen.get(400, 0) > 100 and seen.get(413, 0) >= 4, seen
    # The Idempotency-Key header, and a token that is not text.
    for value in ["a\x00b", "\xff\xfe", "x" * 300, " ", "ok-key"]:
        status, content_type, text = raw_call(
            live_server.url,
            "post",
            "/api/v1/cicd/executions/",
            b'{"pipeline": "nosuch"}',
            {**headers, "Idempotency-Key": value},
        )
        check_answer(status, text, content_type, ("Idempotency-Key", value), token)
        assert 400 <= status < 500


JSON_TEXT = st.text(st.characters(categories=["Cs", "Cc", "Lu", "Nd"]), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=20,
)
BODY_TARGETS = [
    ("post", "/api/v1/cicd/executions/", "parameters"),
    ("post", "/api/v1/cicd/executions/", "pipeline"),
    ("patch", "/api/v1/cicd/tools/1/", "status"),
    ("post", "/hooks/jenkins/" + HOOK_SECRET, "build"),
]


def test_surrogates_and_control_characters_in_json_bodies(live_server: Background) -> None:
    token = make_token(ADMIN)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @given(target=st.sampled_from(BODY_TARGETS), value=JSON_VALUES, key=JSON_TEXT)
    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(target: tuple[str, str, str], value: Any, key: str) -> None:
        method, path, prop = target
        body: dict[str, Any] = {"pipeline": "simple", prop: value, key: value}
        if prop == "build":
            body = {"build": {"full_url": value, "number": value, "phase": key}}
        data = json.dumps(body, ensure_ascii=True).encode()  # "\ud800" travels as an escape
        response = requests.request(
            method, live_server.url + path, data=data, headers=headers, timeout=30
        )
        check_answer(
            response.status_code,
            response.text,
            response.headers.get("Content-Type", ""),
            (method, path, data[:200]),
            token,
        )

    check()
