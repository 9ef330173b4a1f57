"""Input no route may answer with a 5xx: NUL, lone surrogates, deep JSON, huge bodies.

The checks themselves are table-tested; then the same inputs go through the
real server on SQLite and PostgreSQL (where NUL and surrogates used to fail
inside asyncpg), raw bytes included, and nothing is created.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.errors import ApiError
from api.inputs import check_json_text, parse_json, text_problem
from storage.models import Run
from tests.api_support import Api, api_server, make_token, write_standard

E = "/api/v1/cicd/executions/"
HOOK_SECRET = "hook-secret-for-input-tests"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain", None),
        ("", None),
        ("€ and 日本", None),
        ("\U0001f600", None),
        ("a\x00b", "NUL"),
        ("\x00", "NUL"),
        ("\ud800", "surrogate"),
        ("ok\udfffok", "surrogate"),
        ("\udcff", "surrogate"),  # what a non-UTF-8 byte becomes (surrogateescape)
    ],
)
def test_text_problem(value: str, problem: str | None) -> None:
    found = text_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b'{"a": "\\u0000"}', "NUL"),
        (b'{"\\u0000": 1}', "A key in the body contains a NUL"),
        (b'{"a": ["x", {"b": "\\ud800"}]}', "surrogate"),
        (b'{"a": "\xed\xa0\x80"}', "surrogate"),  # UTF-8 bytes of a surrogate
        (b'{"a": 1' + b"0" * 5000 + b"}", "not valid JSON"),  # too many digits for int()
        (b"\xff\xfe{", "not valid JSON"),
        (b'{"a": ', "not valid JSON"),
    ],
)
def test_parse_json_refuses_with_a_reason(raw: bytes, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    assert words in str(caught.value.detail)


def test_check_json_text_walks_any_depth_without_recursion() -> None:
    deep: object = "\x00"
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(ApiError):
        check_json_text(deep)
    fine: object = "ok"
    for _ in range(50_000):
        fine = {"k": fine}
    check_json_text(fine)


async def raw_request(api: Api, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no client library would send; the status and body of the answer."""
    port = int(api.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        length = f"Content-Length: {len(body)}\r\n".encode() if body else b""
        writer.write(head + b"\r\nHost: x\r\nConnection: close\r\n" + length + b"\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def token_header() -> bytes:
    return b"Authorization: Bearer " + make_token("U222").encode()


async def test_bad_text_anywhere_is_400_and_creates_nothing(
    database_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    env = {"ANSFLOW_JENKINS_HOOK_SECRET": HOOK_SECRET}
    async with api_server(database_url, pipelines_dir, **env) as api:
        auth = token_header()
        cases: list[tuple[bytes, bytes, str]] = [
            (b"GET " + E.encode() + b"?pipeline=a%00b HTTP/1.1\r\n" + auth, b"", "NUL"),
            (b"GET " + E.encode() + b"?status=%00 HTTP/1.1\r\n" + auth, b"", "NUL"),
            (b"GET " + E.encode() + b"?a%00=1 HTTP/1.1\r\n" + auth, b"", "NUL"),
            (b"GET " + E.encode() + b"1/logs/?step=%00 HTTP/1.1\r\n" + auth, b"", "NUL"),
            (b"GET " + E.encode() + b"%00/ HTTP/1.1\r\n" + auth, b"", "NUL"),
            (
                b"GET " + E.encode() + b" HTTP/1.1\r\nAuthorization: Bearer \xff\xfe",
                b"",
                "Authorization",
            ),
            (
                b"GET " + E.encode() + b" HTTP/1.1\r\nAuthorization: Bearer a\xed\xa0\x80",
                b"",
                "Authorization",
            ),
            (
                b"POST " + E.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n" + auth,
                b'{"pipeline": "simple", "parameters": {"version": "\\ud800"}}',
                "surrogate",
            ),
            (
                b"POST " + E.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n" + auth,
                b'{"pipeline": "simple", "parameters": {"version": "1\xed\xa0\x80"}}',
                "surrogate",
            ),
            (
                b"POST " + E.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n" + auth,
                b'{"pipeline": "simple", "parameters": {"version": "1\\u0000"}}',
                "NUL",
            ),
            (
                b"POST " + E.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n" + auth,
                b'{"pipeline": "sim\\u0000ple"}',
                "NUL",
            ),
            (
                b"POST " + E.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n" + auth,
                b'{"p":' * 100_000 + b"1" + b"}" * 100_000,
                "nested too deeply",
            ),
            (
                b"POST " + E.encode() + b"1/approve/ HTTP/1.1\r\n" + auth,
                b'{"comment": "\\udfff"}',
                "surrogate",
            ),
            (
                b"PATCH /api/v1/cicd/tools/1/ HTTP/1.1\r\n" + auth,
                b"[" * 100_000 + b"]" * 100_000,
                "nested too deeply",
            ),
            (
                b"POST /hooks/jenkins/" + HOOK_SECRET.encode() + b" HTTP/1.1",
                b"[" * 100_000 + b"]" * 100_000,
                "nested too deeply",
            ),
            (
                b"POST /hooks/jenkins/" + HOOK_SECRET.encode() + b" HTTP/1.1",
                b'{"build": {"full_url": "http://[", "number": 1, "phase": "STARTED"}}',
                "not a Jenkins build notification",
            ),
            (
                b"POST /hooks/jenkins/" + HOOK_SECRET.encode() + b" HTTP/1.1",
                b'{"build": {"url": "job/a/1/", "number": 1e999, "phase": "STARTED"}}',
                "not a Jenkins build notification",
            ),
            (b"POST /hooks/jenkins/a%00b HTTP/1.1", b"{}", "NUL"),
        ]
        for head, body, words in cases:
            status, text = await raw_request(api, head, body)
            shown = head[:70] + b" " + body[:70]
            assert status == 400, (shown, status, text[:300])
            assert words.encode() in text, (shown, text[:300])
            assert b'"error"' in text and b'"detail"' in text
        assert await Run.all().count() == 0


async def test_huge_bodies_are_413_everywhere(database_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    env = {"ANSFLOW_JENKINS_HOOK_SECRET": HOOK_SECRET}
    big = b'{"pipeline": "simple", "parameters": {"version": "' + b"1" * 2_000_000 + b'"}}'
    async with api_server(database_url, pipelines_dir, **env) as api:
        for method, path in [
            ("POST", E),
            ("POST", f"{E}1/approve/"),
            ("PATCH", "/api/v1/cicd/tools/1/"),
            ("POST", f"/hooks/jenkins/{HOOK_SECRET}"),
        ]:
            reply = await api.call(method, path, data=big)
            assert reply.status == 413, (path, reply.text[:200])
            assert set(reply.body) >= {"error", "detail"}

        # Chunked (no Content-Length): the same.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b"1" * 65536

        reply = await api.call("POST", E, data=chunks())
        assert reply.status == 413, reply.text[:200]
        assert await Run.all().count() == 0


async def test_wrong_types_and_huge_numbers_are_4xx(database_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        bodies: list[object] = [
            {"pipeline_id": 10**30},
            {"pipeline_id": -1},
            {"pipeline_id": 1e308},
            {"pipeline_id": "1"},
            {"pipeline": ["simple"]},
            {"pipeline": "x" * 100_000},
            {"pipeline": "simple", "cicd_tool_id": 2**63},
            {"pipeline": "simple", "parameters": {"version": {"a": 1}}},
            {"pipeline": "simple", "parameters": [1]},
            {"pipeline": "simple", "trigger_type": 5},
            {"pipeline": "simple", "parameters": {"env": 10**300}},
        ]
        for body in bodies:
            reply = await api.call("POST", E, json=body)
            assert 400 <= reply.status < 500, (str(body)[:100], reply.status, reply.text[:200])
            assert set(reply.body) >= {"error", "detail"}
        for query in ["page=99999999999", "page_size=1e3", "page=-1", "status=" + "x" * 5000]:
            reply = await api.call("GET", f"{E}?{query}")
            assert reply.status == 400, (query, reply.text[:200])
        for path in [f"{E}99999999999/", f"{E}-1/", f"{E}1.5/cancel/", "/api/v1/cicd/tools/0/"]:
            reply = await api.call("GET" if "cancel" not in path else "POST", path)
            assert 400 <= reply.status < 500, (path, reply.status)
        assert await Run.all().count() == 0
