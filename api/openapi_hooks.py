"""The OpenAPI entries of the create's Idempotency-Key and of the hook routes under ``/hooks/``."""

from __future__ import annotations

from api.openapi_parts import ERR, UNAVAILABLE, Json, json_body, ref

IDEMPOTENCY: Json = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any 1 to 255 visible ASCII characters (e.g. a UUID). The same key from "
    "the same token subject acts once, on any replica: the first request answers 201, every "
    "later one (also while the first is in flight) 200 with the execution the first created "
    "(as it is now) and the header `Idempotent-Replayed: true`. The same key with a "
    "different body is 422 `idempotency_key_reused`. A request refused with 4xx records "
    "nothing, so it may be corrected and sent again with the same key.",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
}

_HOOK_ANSWER: Json = {
    "type": "object",
    "properties": {"status": {"type": "string"}},
}

HOOKS: Json = {
    "/hooks/jenkins/{secret}": {
        "post": {
            "summary": "Jenkins Notification plugin: move the step following this build now",
            "description": "Enabled by ANSFLOW_JENKINS_HOOK_SECRET; the secret in the path is "
            "the only protection (the plugin signs nothing). A wrong secret, or none set, is 404.",
            "security": [],
            "parameters": [
                {"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "description": "The plugin's JSON: `build.full_url` (or `url`), "
                            "`build.number`, `build.queue_id`, `build.phase`.",
                        }
                    }
                },
            },
            "responses": {
                "200": json_body(_HOOK_ANSWER, "a step follows this build; it moved"),
                "202": json_body(_HOOK_ANSWER, "no step follows this build; ignored"),
                "400": ERR,
                "404": ERR,
                "413": ERR,
                "503": UNAVAILABLE,
            },
        }
    },
    "/hooks/pipelines/{name}": {
        "post": {
            "summary": "Start a run of a pipeline that declares `triggers.webhook`",
            "description": "The body is JSON, signed as GitHub signs: `X-Hub-Signature-256: "
            "sha256=<hex HMAC-SHA256 of the body>`, keyed by the env var the pipeline names in "
            "`secret_env`; parameters come from the body as declared. A delivery id seen "
            "before (`X-GitHub-Delivery`) answers 2xx with the same run and starts nothing.",
            "security": [],
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "X-Hub-Signature-256",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                },
                {"name": "X-GitHub-Delivery", "in": "header", "schema": {"type": "string"}},
                {"name": "X-GitHub-Event", "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "201": json_body(ref("Execution"), "a new run"),
                "200": json_body(
                    {"type": "object"},
                    "a `ping` (no run), or a delivery seen before: its run",
                ),
                "400": ERR,
                "401": ERR,
                "404": ERR,
                "409": ERR,
                "413": ERR,
                "503": UNAVAILABLE,
            },
        }
    },
}
