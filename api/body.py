"""Checking the body of ``POST /api/v1/cicd/executions/`` (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.errors import ApiError

TRIGGER_TYPES = ("manual", "api", "webhook", "schedule")
FIELDS = frozenset({"pipeline", "pipeline_id", "cicd_tool_id", "trigger_type", "parameters"})
MAX_ID = 2**31 - 1
MAX_NAME = 200


@dataclass(frozen=True)
class CreateBody:
    pipeline: str | None
    pipeline_id: int | None
    cicd_tool_id: int | None
    trigger_type: str
    parameters: dict[str, str]


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"`{name}` must be an integer.")
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"There is no item with {name} {value}.")
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def parse_create(body: dict[str, Any]) -> CreateBody:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ApiError(
            400, f"Unknown field(s) {', '.join(unknown)}. Valid: {', '.join(sorted(FIELDS))}."
        )
    pipeline = body.get("pipeline")
    if pipeline is not None and (not isinstance(pipeline, str) or not pipeline.strip()):
        raise ApiError(400, "`pipeline` must be a pipeline name (a non-empty string).")
    if isinstance(pipeline, str) and len(pipeline) > MAX_NAME:
        raise ApiError(400, f"`pipeline` is longer than {MAX_NAME} characters; no name is.")
    pipeline_id = _int_field(body, "pipeline_id")
    if pipeline is None and pipeline_id is None:
        raise ApiError(400, "Give `pipeline` (a name) or `pipeline_id`.")
    trigger_type = body.get("trigger_type")
    if trigger_type is None:
        trigger_type = "api"
    if trigger_type not in TRIGGER_TYPES:
        raise ApiError(400, f"`trigger_type` must be one of {', '.join(TRIGGER_TYPES)}.")
    raw = body.get("parameters")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ApiError(400, "`parameters` must be an object of name → value.")
    parameters: dict[str, str] = {}
    for key, value in raw.items():
        text = _text(value)
        if text is None:
            raise ApiError(
                400, f"Parameter `{key}` must be a string, number or boolean.", parameter=key
            )
        parameters[key] = text
    return CreateBody(
        pipeline=pipeline.strip() if isinstance(pipeline, str) else None,
        pipeline_id=pipeline_id,
        cicd_tool_id=_int_field(body, "cicd_tool_id"),
        trigger_type=str(trigger_type),
        parameters=parameters,
    )
