"""``/ansflow list``: the pipelines the caller may run here, with parameters and defaults."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import messages as say
from bot.commands.base import CommandEnv, Invocation, expect
from bot.parsing import ParsedCommand
from bot.views import Message, escape, pipeline_list
from engine.jenkins.sync import pipeline_job_problems
from engine.permissions import may_run
from engine.pipelines import JenkinsSpec, Pipeline
from engine.schedules import next_fire_at


async def handle(env: CommandEnv, call: Invocation, command: ParsedCommand) -> Message | None:
    expect(command, min_args=0, max_args=0)
    catalog = env.engine.source.catalog()
    allowed = [
        pipeline
        for _, pipeline in sorted(catalog.pipelines.items())
        if may_run(pipeline, call.actor, env.engine.admins)
    ]
    now = datetime.now(UTC)
    notes = {p.name: schedule_notes(p, now) + await jenkins_notes(p) for p in allowed}
    return pipeline_list(allowed, notes)


def schedule_notes(pipeline: Pipeline, now: datetime) -> list[str]:
    fire = next_fire_at(pipeline, now)
    return [say.next_fire(fire)] if fire is not None else []


async def jenkins_notes(pipeline: Pipeline) -> list[str]:
    """Which Jenkins jobs a pipeline uses, flagging jobs or parameters that no longer exist."""
    leaves = pipeline.leaves()
    jobs = sorted({spec.jenkins.job for _, spec in leaves if isinstance(spec, JenkinsSpec)})
    if not jobs:
        return []
    notes = ["Jenkins: " + ", ".join(f"`{escape(job)}`" for job in jobs)]
    problems = await pipeline_job_problems(pipeline)
    notes += [f":warning: {escape(step)}: {escape(problem)}" for step, problem in problems.items()]
    return notes
