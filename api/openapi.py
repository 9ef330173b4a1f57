"""The OpenAPI 3.1 document of ``/api/v1`` (hand-kept; a test checks it against the router)."""

from __future__ import annotations

from aiohttp import web

from api.body import TRIGGER_TYPES
from api.listing import MAX_PAGE_SIZE
from api.openapi_hooks import HOOKS, IDEMPOTENCY
from api.openapi_parts import ERR, ID, UNAVAILABLE, Json, json_body, nullable, ref
from engine.state import RunStatus, StepStatus

PATH = "/api/v1/openapi.json"


def _errors(*codes: int) -> Json:
    """401 (every bearer route), the given codes, and 503 while the database is down."""
    return {**{str(code): ERR for code in (401, *codes)}, "503": UNAVAILABLE}


def _page(item: str) -> Json:
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer"},
            "next": nullable("string"),
            "previous": nullable("string"),
            "results": {"type": "array", "items": ref(item)},
        },
    }


_STEP = {
    "type": "object",
    "required": ["name", "kind", "status", "started_at", "finished_at", "external_url", "log_tail"],
    "properties": {
        "name": {"type": "string"},
        "path": {"type": "string"},
        "kind": {"type": "string"},
        "status": {"enum": [s.value for s in StepStatus]},
        "started_at": nullable("string", format="date-time"),
        "finished_at": nullable("string", format="date-time"),
        "exit_code": nullable("integer"),
        "reason": nullable("string"),
        "external_url": nullable("string"),
        "log_tail": {"type": "string"},
    },
}

_EXECUTION = {
    "type": "object",
    "required": [
        "id",
        "pipeline",
        "status",
        "trigger_type",
        "triggered_by",
        "parameters",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "steps",
    ],
    "properties": {
        "id": {"type": "integer"},
        "pipeline": {"type": "string"},
        "status": {"enum": [s.value for s in RunStatus]},
        "trigger_type": {"type": "string"},
        "triggered_by": {"type": "string"},
        "source": {"type": "string"},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
        "reason": nullable("string"),
        "failed_step": nullable("string"),
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": nullable("string", format="date-time"),
        "finished_at": nullable("string", format="date-time"),
        "duration": nullable("number", description="seconds"),
        "steps": {"type": "array", "items": ref("Step")},
        "approvals": {"type": "array", "items": ref("ApprovalDecision")},
        "concurrency_group": nullable("string"),
        "queued_behind": nullable("integer", description="while queued: the run ahead of it"),
    },
}

_CREATE = {
    "type": "object",
    "description": "Give `pipeline` (a name) or `pipeline_id` (the `id` that "
    "GET /api/v1/pipelines/ shows: given when the pipeline is first seen, never changed).",
    "additionalProperties": False,
    "properties": {
        "pipeline": {"type": "string", "minLength": 1},
        "pipeline_id": {"type": "integer", "minimum": 1},
        "cicd_tool_id": {"type": "integer", "minimum": 1},
        "trigger_type": {"enum": list(TRIGGER_TYPES), "default": "api"},
        "parameters": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
    },
}

_SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {}},
    },
    "Step": _STEP,
    "Execution": _EXECUTION,
    "ApprovalDecision": {
        "type": "object",
        "properties": {
            "step": {"type": "string"},
            "user": {"type": "string"},
            "decision": {"type": "string"},
            "comment": nullable("string"),
            "decided_at": nullable("string", format="date-time"),
        },
    },
    "CreateExecution": _CREATE,
    "Decision": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"comment": {"type": "string", "maxLength": 2000}},
    },
    "Pipeline": {
        "type": "object",
        "required": ["id", "name", "parameters"],
        "properties": {
            "id": {"type": "integer", "description": "stable: kept if its file goes and returns"},
            "name": {"type": "string"},
            "description": nullable("string"),
            "channel": nullable("string"),
            "next_fire_at": nullable(
                "string", format="date-time", description="next scheduled run"
            ),
            "parameters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "default": nullable("string"),
                        "required": {"type": "boolean"},
                        "choices": {"type": ["array", "null"], "items": {"type": "string"}},
                        "pattern": nullable("string"),
                        "description": nullable("string"),
                    },
                },
            },
            "steps": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Tool": {
        "type": "object",
        "required": ["id", "name", "kind", "url", "status"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "url": {"type": "string"},
            "username": {"type": "string"},
            "status": {"enum": ["active", "inactive"]},
            "last_health_at": nullable("string", format="date-time"),
            "last_health_ok": nullable("boolean"),
            "last_health_error": nullable("string"),
            "created_at": nullable("string", format="date-time"),
            "updated_at": nullable("string", format="date-time"),
        },
    },
    "ToolPatch": {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"enum": ["active", "inactive"]}},
    },
}


def _body(schema: str, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def _decide(word: str) -> Json:
    return {
        "post": {
            "summary": f"{word.capitalize()} the run's waiting approval as the token's subject",
            "parameters": [ID],
            "requestBody": _body("Decision", required=False),
            "responses": {
                "200": json_body(ref("Execution"), "the execution"),
                **_errors(400, 403, 404, 409, 413),
            },
        }
    }


_WS = {
    "101": {"description": "switching to WebSocket: a snapshot, then one JSON message per event"}
}

_E = "/api/v1/cicd/executions/"

PATHS: Json = {
    _E: {
        "post": {
            "summary": "Start a run",
            "parameters": [IDEMPOTENCY],
            "requestBody": _body("CreateExecution"),
            "responses": {
                "201": json_body(ref("Execution"), "the new execution"),
                "200": json_body(ref("Execution"), "Idempotency-Key seen before: its execution"),
                **_errors(400, 403, 404, 409, 413, 422),
            },
        },
        "get": {
            "summary": "Executions the token's user may see, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": [s.value for s in RunStatus]}},
                {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "default": 1},
                },
                {
                    "name": "page_size",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_PAGE_SIZE,
                        "default": 20,
                    },
                },
            ],
            "responses": {"200": json_body(_page("Execution"), "a page"), **_errors(400)},
        },
    },
    _E + "{id}/": {
        "get": {
            "summary": "One execution with its steps",
            "parameters": [ID],
            "responses": {"200": json_body(ref("Execution"), "the execution"), **_errors(403, 404)},
        }
    },
    _E + "{id}/cancel/": {
        "post": {
            "summary": "Cancel a run",
            "parameters": [ID],
            "responses": {
                "202": json_body(ref("Execution"), "cancel requested"),
                "200": json_body(ref("Execution"), "cancel was already requested"),
                **_errors(403, 404, 409),
            },
        }
    },
    _E + "{id}/approve/": _decide("approve"),
    _E + "{id}/reject/": _decide("reject"),
    _E + "{id}/logs/": {
        "get": {
            "summary": "Stored log of one step, or of all steps with headers",
            "parameters": [ID, {"name": "step", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "the log",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(403, 404),
            },
        }
    },
    "/api/v1/pipelines/": {
        "get": {
            "summary": "Pipelines the token's user may run, with their parameters",
            "responses": {"200": json_body(_page("Pipeline"), "pipelines"), **_errors()},
        }
    },
    "/api/v1/cicd/tools/": {
        "get": {
            "summary": "CI/CD tools (never their tokens)",
            "responses": {"200": json_body(_page("Tool"), "tools"), **_errors()},
        }
    },
    "/api/v1/cicd/tools/{id}/": {
        "patch": {
            "summary": "Activate or deactivate a tool (admins)",
            "parameters": [ID],
            "requestBody": _body("ToolPatch"),
            "responses": {
                "200": json_body(ref("Tool"), "the tool"),
                **_errors(400, 403, 404, 413),
            },
        }
    },
    "/api/v1/ws/executions/": {
        "get": {
            "summary": "WebSocket: every run the token may see",
            "responses": {**_WS, **_errors()},
        }
    },
    "/api/v1/ws/executions/{id}/": {
        "get": {
            "summary": "WebSocket: one run until it ends",
            "parameters": [ID],
            "responses": {**_WS, **_errors(403, 404)},
        }
    },
    PATH: {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1"}},
        }
    },
}


def document() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {"title": "AnsFlow ChatOps API", "version": "1"},
        "paths": {**PATHS, **HOOKS},
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, openapi_json)
