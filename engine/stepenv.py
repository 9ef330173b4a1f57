"""A step's environment: built from scratch, never inherited (docs/pipelines.md).

A change violates this when it starts from ``os.environ`` and removes secrets:
anything the service holds must not reach a step unless listed here.
"""

from __future__ import annotations

import os

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Harmless facts about the machine that commands commonly expect.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TERM", "TMPDIR")


def base_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", "/tmp")  # noqa: S108 - a step needs some HOME
    env.setdefault("LANG", "C.UTF-8")
    return env


def step_environment(
    *,
    pipeline_env: dict[str, str],
    step_env: dict[str, str],
    parameters: dict[str, str],
    run_id: int,
    pipeline: str,
    step: str,
    triggered_by: str,
    secrets: list[str],
    workspace: str | None = None,
) -> dict[str, str]:
    env = base_environment()
    env.update(pipeline_env)
    env.update(step_env)
    env.update(parameters)
    env.update(
        {
            "ANSFLOW_RUN_ID": str(run_id),
            "ANSFLOW_PIPELINE": pipeline,
            "ANSFLOW_STEP": step,
            "ANSFLOW_TRIGGERED_BY": triggered_by,
        }
    )
    if workspace is not None:
        env["ANSFLOW_WORKSPACE"] = workspace  # the run's own working directory
    # Defence in depth: even a pass-through name never carries a service secret.
    secret_set = {s for s in secrets if s}
    return {k: v for k, v in env.items() if v not in secret_set}
