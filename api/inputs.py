"""Text a request carries must be storable: checked before anything reaches the database.

PostgreSQL refuses NUL characters and asyncpg cannot encode lone surrogates
(JSON's ``"\\ud800"``, or bytes that are not UTF-8), so such text in a path,
a query, a header we read or a JSON body is answered with 400 here instead of
failing deep inside a query. JSON nested deeper than Python can parse is 400
too. The checks are pure; :func:`input_guard` applies them at the edge.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api.errors import ApiError, Handler

# Routes whose path, query and headers are checked (the Slack endpoint checks its own).
GUARDED_PREFIXES = ("/api/", "/hooks/")
CHECKED_HEADERS = ("Authorization", "Idempotency-Key")
MAX_SHOWN = 40


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode text (a lone surrogate or bytes that are not UTF-8)"
    return None


def check_text(value: str, where: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise ApiError(400, f"{where} {problem}.")


def check_json_text(data: Any, where: str = "The body") -> None:
    """Every key and string anywhere in parsed JSON is storable (iterative: any depth)."""
    pending: list[Any] = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_text(item, f"A string in {where.lower()}")
        elif isinstance(item, dict):
            for key, value in item.items():
                check_text(key, f"A key in {where.lower()}")
                pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)


def parse_json(raw: bytes, where: str = "The body") -> Any:
    """``raw`` as JSON whose text is all storable, or a 400 saying what is wrong."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"{where} is JSON nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"{where} is not valid JSON: {str(exc)[:200]}") from None
    check_json_text(data, where)
    return data


def check_request_text(request: web.Request) -> None:
    """The path's variables, the query and the headers we read hold storable text."""
    for name, value in request.match_info.items():
        check_text(value, f"The path ({name})")
    for key, value in request.query.items():
        check_text(key, "A query parameter's name")
        check_text(value, f"The query parameter `{key[:MAX_SHOWN]}`")
    for header in CHECKED_HEADERS:
        sent = request.headers.get(header)
        if sent is not None:
            check_text(sent, f"The {header} header")


@web.middleware
async def input_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(GUARDED_PREFIXES):
        check_text(request.path, "The path")
        check_request_text(request)
    return await handler(request)
