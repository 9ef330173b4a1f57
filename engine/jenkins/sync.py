"""Job sync: a tool's jobs (folders as ``a/b/c``) and their parameters, into ``JenkinsJob``.

Also the pure check `job_problem` that says whether a pipeline's Jenkins step
still matches what was synced (``/ansflow list`` flags those that do not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from engine.jenkins.client import JenkinsClient
from engine.jenkins.models import JobInfo, ParamDef
from engine.jenkins.phases import MARKER_PARAM
from engine.pipelines import JenkinsSpec, Pipeline
from storage.models import CICDTool, JenkinsJob
from storage.runs import now


@dataclass(frozen=True)
class SyncSummary:
    tool: str
    jobs: int
    added: int
    updated: int
    removed: int

    def __str__(self) -> str:
        return (
            f"{self.tool}: {self.jobs} job(s) "
            f"({self.added} new, {self.updated} changed, {self.removed} removed)"
        )


def _param_json(param: ParamDef) -> dict[str, Any]:
    return {
        "name": param.name,
        "type": param.type,
        "default": param.default,
        "choices": list(param.choices),
    }


async def sync_jobs(tool: CICDTool, client: JenkinsClient) -> SyncSummary:
    """Replace the tool's stored jobs with what Jenkins lists now."""
    jobs: list[JobInfo] = await client.list_jobs()
    stamp = now()
    added = updated = 0
    async with in_transaction() as conn:
        stored = {j.full_name: j for j in await JenkinsJob.filter(tool_id=tool.id).using_db(conn)}
        for info in jobs:
            params = [_param_json(p) for p in info.parameters]
            row = stored.pop(info.full_name, None)
            if row is None:
                await JenkinsJob.create(
                    tool_id=tool.id,
                    full_name=info.full_name,
                    url=info.url,
                    buildable=info.buildable,
                    parameters=params,
                    synced_at=stamp,
                    using_db=conn,
                )
                added += 1
                continue
            if (row.url, row.buildable, row.parameters) != (info.url, info.buildable, params):
                updated += 1
            await (
                JenkinsJob.filter(id=row.id)
                .using_db(conn)
                .update(url=info.url, buildable=info.buildable, parameters=params, synced_at=stamp)
            )
        if stored:
            ids = [row.id for row in stored.values()]
            await JenkinsJob.filter(id__in=ids).using_db(conn).delete()
    return SyncSummary(tool.name, len(jobs), added, updated, len(stored))


def job_problem(spec: JenkinsSpec, jobs: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """What is wrong with a step's job given the synced jobs (full name -> row as dict).

    ``jobs`` None means the tool was never synced: nothing can be said.
    """
    if jobs is None:
        return None
    name = spec.jenkins.job.strip("/")
    job = jobs.get(name)
    if job is None:
        return f"Jenkins job '{name}' no longer exists"
    if not job.get("buildable", True):
        return f"Jenkins job '{name}' is disabled"
    declared = {str(p.get("name")) for p in job.get("parameters") or ()}
    unknown = sorted(set(spec.jenkins.parameters) - declared - {MARKER_PARAM})
    if unknown:
        return f"Jenkins job '{name}' has no parameter {', '.join(unknown)}"
    return None


async def pipeline_job_problems(pipeline: Pipeline) -> dict[str, str]:
    """Step name -> problem, for each Jenkins step whose job or parameters are gone."""
    problems: dict[str, str] = {}
    cache: dict[str, dict[str, dict[str, Any]] | None] = {}
    for _, spec in pipeline.leaves():
        if not isinstance(spec, JenkinsSpec):
            continue
        tool = spec.jenkins.tool
        if tool not in cache:
            cache[tool] = await _synced_jobs(tool)
        problem = job_problem(spec, cache[tool])
        if problem:
            problems[spec.name] = problem
    return problems


async def _synced_jobs(tool_name: str) -> dict[str, dict[str, Any]] | None:
    tool = await CICDTool.filter(name=tool_name).first()
    if tool is None:
        return None
    rows = await JenkinsJob.filter(tool_id=tool.id)
    if not rows:
        return None
    return {r.full_name: {"buildable": r.buildable, "parameters": r.parameters} for r in rows}
