"""Pieces the OpenAPI document is built from: references, JSON bodies, the error answers."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **more: Any) -> Json:
    return {"type": [kind, "null"], **more}


def json_body(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = json_body(ref("Error"), "error")
ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}


UNAVAILABLE = {
    "description": "the database cannot be reached now; retry after `Retry-After` seconds. "
    'The body is `{"error": "database unavailable", "detail": "try again shortly"}`.',
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    "content": {"application/json": {"schema": ref("Error")}},
}
