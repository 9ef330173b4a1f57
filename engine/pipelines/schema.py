"""The pipeline file format (docs/pipelines.md), as pydantic models.

``ansflow schema`` prints :func:`json_schema` for editors.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.pipelines.triggers import (
    ConcurrencySpec,
    ScheduleSpec,
    TriggersSpec,
    check_references,
)

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
SLACK_ID = r"^[A-Z0-9][A-Z0-9_]*$"
# Names a step's environment owns; a parameter or env entry may not replace them.
RESERVED_ENV = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "SHELL", "IFS", "ENV", "BASH_ENV"})
RESERVED_PREFIXES = ("ANSFLOW_", "LD_")

_NOT_IDENTIFIER = "is not valid: use letters, digits and '_', not starting with a digit"
_RESERVED = "is reserved (the step's environment sets it); pick another name"

StepName = Annotated[str, Field(min_length=1, max_length=80)]
Timeout = Annotated[float, Field(gt=0, le=7 * 24 * 3600, description="seconds")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_env_names(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not re.match(IDENTIFIER, key):
            raise ValueError(f"env name `{key}` {_NOT_IDENTIFIER}")
        if key in RESERVED_ENV or key.startswith(RESERVED_PREFIXES):
            raise ValueError(f"env name `{key}` {_RESERVED}")
    return env


class Parameter(_Strict):
    default: str | None = None
    required: bool = False
    choices: list[str] | None = Field(None, min_length=1)
    pattern: str | None = None
    description: str | None = None

    @field_validator("default", mode="before")
    @classmethod
    def _scalar_to_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return value

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_to_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int | float) else v for v in value]
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _default_is_valid(self) -> Parameter:
        if self.default is not None:
            if self.choices is not None and self.default not in self.choices:
                choices = ", ".join(self.choices)
                raise ValueError(f"default {self.default!r} is not one of the choices: {choices}")
            if self.pattern is not None and not re.fullmatch(self.pattern, self.default):
                raise ValueError(
                    f"default {self.default!r} does not match the pattern {self.pattern}"
                )
        return self


class RunSpec(_Strict):
    kind: Literal["run"] = "run"
    name: StepName
    run: str = Field(min_length=1)
    timeout: Timeout | None = None
    env: dict[str, str] = Field(default_factory=dict)
    retry_on_restart: bool = Field(
        False, description="re-run this step if the service restarted while it ran"
    )

    _env_names = field_validator("env")(_check_env_names)


class ApprovalConfig(_Strict):
    approvers: list[Annotated[str, Field(pattern=SLACK_ID)]] = Field(min_length=1)
    required: int = Field(1, ge=1)
    allow_self_approval: bool = False
    timeout: Timeout | None = None

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalConfig:
        if self.required > len(set(self.approvers)):
            listed = len(set(self.approvers))
            raise ValueError(
                f"required is {self.required} but only {listed} approver"
                f"{' is' if listed == 1 else 's are'} listed; list more or lower required"
            )
        return self


class ApprovalSpec(_Strict):
    kind: Literal["approval"] = "approval"
    name: StepName
    approval: ApprovalConfig
    timeout: Timeout | None = None


class JenkinsConfig(_Strict):
    tool: str = Field("jenkins", min_length=1)
    job: str = Field(min_length=1, pattern=r"^[^/]+(/[^/]+)*$")
    parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("parameters", mode="before")
    @classmethod
    def _values_to_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float | bool) else v for k, v in value.items()}
        return value


class JenkinsSpec(_Strict):
    kind: Literal["jenkins"] = "jenkins"
    name: StepName
    jenkins: JenkinsConfig
    timeout: Timeout | None = None


_KINDS = ("run", "approval", "jenkins", "parallel")


def _tag_kind(value: Any) -> Any:
    """Give a raw step mapping its ``kind`` from the one kind key it carries."""
    if not isinstance(value, dict) or "kind" in value:
        return value
    present = [k for k in _KINDS if k in value]
    if len(present) > 1:
        raise ValueError(f"a step has exactly one kind, this one has {' and '.join(present)}")
    if not present:
        guesses = [
            f"`{kind}` instead of `{key}`"
            for key in value
            for kind in difflib.get_close_matches(str(key), _KINDS, n=1, cutoff=0.6)
        ]
        hint = f"; did you mean {guesses[0]}?" if guesses else ""
        raise ValueError(f"a step needs one of: run, parallel, approval, jenkins{hint}")
    tagged = dict(value)
    tagged["kind"] = present[0]
    return tagged


LeafSpec = Annotated[
    RunSpec | ApprovalSpec | JenkinsSpec,
    Field(discriminator="kind"),
    BeforeValidator(_tag_kind),
]


class ParallelSpec(_Strict):
    kind: Literal["parallel"] = "parallel"
    name: StepName | None = None
    parallel: list[LeafSpec] = Field(min_length=1)


StageSpec = Annotated[
    RunSpec | ApprovalSpec | JenkinsSpec | ParallelSpec,
    Field(discriminator="kind"),
    BeforeValidator(_tag_kind),
]


class Pipeline(_Strict):
    name: str = Field(pattern=PIPELINE_NAME, max_length=80)
    description: str | None = None
    channel: str | None = Field(None, pattern=SLACK_ID)
    allowed_users: list[Annotated[str, Field(pattern=SLACK_ID)]] | None = None
    allowed_channels: list[Annotated[str, Field(pattern=SLACK_ID)]] | None = None
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout | None = Field(None, description="default timeout of each step")
    steps: list[StageSpec] = Field(min_length=1)
    # Runs that start themselves, and runs that must not overlap (engine/pipelines/triggers.py).
    schedule: list[ScheduleSpec] | None = None
    triggers: TriggersSpec | None = None
    concurrency: ConcurrencySpec | None = None

    _env_names = field_validator("env")(_check_env_names)

    @field_validator("schedule", "triggers", "concurrency")
    @classmethod
    def _declared_references(cls, value: Any, info: ValidationInfo) -> Any:
        check_references(info.field_name or "", value, set(info.data.get("parameters", {})))
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _none_to_empty(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for key in value:
            if not re.match(IDENTIFIER, key):
                raise ValueError(f"parameter name `{key}` {_NOT_IDENTIFIER}")
            if key in RESERVED_ENV or key.startswith(RESERVED_PREFIXES):
                raise ValueError(f"parameter name `{key}` {_RESERVED}")
        return value

    @field_validator("steps")
    @classmethod
    def _unique_step_names(cls, steps: list[StageSpec]) -> list[StageSpec]:
        seen: set[str] = set()
        for stage in steps:
            leaves = stage.parallel if isinstance(stage, ParallelSpec) else [stage]
            for leaf in leaves:
                if leaf.name in seen:
                    raise ValueError(
                        f"two steps are named {leaf.name!r}; each step needs a name of its own"
                    )
                seen.add(leaf.name)
        return steps

    def stages(self) -> list[list[tuple[str, RunSpec | ApprovalSpec | JenkinsSpec]]]:
        """Leaf steps grouped by stage, each with its path (``"2"`` or ``"1.0"``)."""
        result: list[list[tuple[str, RunSpec | ApprovalSpec | JenkinsSpec]]] = []
        for index, stage in enumerate(self.steps):
            if isinstance(stage, ParallelSpec):
                result.append([(f"{index}.{j}", leaf) for j, leaf in enumerate(stage.parallel)])
            else:
                result.append([(str(index), stage)])
        return result

    def leaves(self) -> list[tuple[str, RunSpec | ApprovalSpec | JenkinsSpec]]:
        return [leaf for stage in self.stages() for leaf in stage]


def json_schema() -> dict[str, Any]:
    schema = Pipeline.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "AnsFlow pipeline"
    return schema
