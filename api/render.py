"""Pure rendering of runs, steps, pipelines and tools into API JSON.

Times are ISO 8601 in UTC (``...Z``); ``duration`` is seconds or null.
Nothing here may ever include a CI/CD tool's token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from engine.events import Event, RunSnapshot, StepSnapshot
from engine.pipelines import Pipeline
from storage.models import CICDTool

Json = dict[str, Any]


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def step_json(step: StepSnapshot) -> Json:
    return {
        "name": step.name,
        "path": step.path,
        "kind": step.kind,
        "status": step.status.value,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "exit_code": step.exit_code,
        "reason": step.reason,
        "external_url": step.external_url,
        "log_tail": step.log_tail,
    }


def execution_json(run: RunSnapshot, approvals: list[Json] | None = None) -> Json:
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "trigger_type": run.trigger_type,
        "triggered_by": run.triggered_by,
        "source": run.source,
        "parameters": dict(run.parameters),
        "reason": run.reason,
        "failed_step": run.failed_step,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration": run.duration,
        "concurrency_group": run.concurrency_group,
        "queued_behind": run.queued_behind if run.status.value == "queued" else None,
        "steps": [step_json(s) for s in run.steps],
        "approvals": approvals or [],
    }


def event_json(event: Event) -> Json:
    step: StepSnapshot | None = getattr(event, "step", None)
    body: Json = {
        "type": event.type,
        "execution_id": event.run.id,
        "status": event.run.status.value,
        "step": step_json(step) if step is not None else None,
        "execution": execution_json(event.run),
    }
    for extra in ("by", "user_id", "decision", "comment"):
        if hasattr(event, extra):
            body[extra] = getattr(event, extra)
    return body


def decision_json(step: str, user: str, decision: str, comment: str | None, at: datetime) -> Json:
    return {
        "step": step,
        "user": user,
        "decision": decision,
        "comment": comment,
        "decided_at": iso(at),
    }


def pipeline_json(pipeline_id: int, pipeline: Pipeline) -> Json:
    return {
        "id": pipeline_id,
        "name": pipeline.name,
        "description": pipeline.description,
        "channel": pipeline.channel,
        "parameters": [
            {
                "name": name,
                "default": spec.default,
                "required": spec.required and spec.default is None,
                "choices": list(spec.choices) if spec.choices is not None else None,
                "pattern": spec.pattern,
                "description": spec.description,
            }
            for name, spec in pipeline.parameters.items()
        ],
        "steps": [
            {"path": path, "name": spec.name, "kind": spec.kind} for path, spec in pipeline.leaves()
        ],
    }


def safe_url(url: str) -> str:
    """``url`` without any user:password part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def tool_json(tool: CICDTool) -> Json:
    return {
        "id": tool.id,
        "name": tool.name,
        "kind": tool.kind,
        "url": safe_url(tool.url),
        "username": tool.username,
        "status": tool.status,
        "last_health_at": iso(tool.last_health_at),
        "last_health_ok": tool.last_health_ok,
        "last_health_error": tool.last_health_error,
        "created_at": iso(tool.created_at),
        "updated_at": iso(tool.updated_at),
    }


def page_json(
    count: int, results: list[Json], next_url: str | None, previous_url: str | None
) -> Json:
    return {"count": count, "next": next_url, "previous": previous_url, "results": results}
