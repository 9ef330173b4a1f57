"""Errors the engine raises, in one tree.

    EngineError
    ├── UserError              a person asked for something that cannot be done;
    │   │                      the message is fit to show them
    │   ├── PipelineNotFound
    │   ├── InvalidParameter
    │   ├── NotAllowed
    │   ├── RunNotFound
    │   ├── StepNotFound
    │   ├── Conflict           the request is valid but the state forbids it
    │   │   └── ToolNotActive
    │   └── UnknownTool
    └── StepCrashed            our side failed while running a step (not the step's fault)

Anything else escaping the engine is a bug: it is logged with its traceback
and the user is shown a short apology with a reference id.
"""

from __future__ import annotations


class EngineError(Exception):
    pass


class UserError(EngineError):
    """Caused by the request; ``str()`` is the message to show the asker."""


class PipelineNotFound(UserError):
    """``close_matches``: loaded names like the one asked for, best first;
    ``available``: every loaded name, sorted (filter by permission before showing)."""

    def __init__(
        self, name: str, close_matches: list[str], available: list[str] | None = None
    ) -> None:
        self.name = name
        self.close_matches = close_matches
        self.available = sorted(available or [])
        hint = f" Did you mean {', '.join(close_matches)}?" if close_matches else ""
        super().__init__(f"There is no pipeline named `{name}`.{hint}")


class InvalidParameter(UserError):
    def __init__(self, message: str, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message)


class NotAllowed(UserError):
    pass


class RunNotFound(UserError):
    def __init__(self, run_id: object) -> None:
        super().__init__(f"There is no run with id {run_id}.")


class StepNotFound(UserError):
    def __init__(self, run_id: int, step: str, names: list[str]) -> None:
        super().__init__(f"Run {run_id} has no step named `{step}`. Its steps: {', '.join(names)}.")


class Conflict(UserError):
    pass


class ToolNotActive(Conflict):
    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__("CI/CD tool is not active")


class UnknownTool(UserError):
    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__(f"Unknown CI/CD tool `{tool}`: register it (e.g. JENKINS_URL) first.")


class StepCrashed(EngineError):
    pass
