"""Checking the parameters a person gave against a pipeline's declaration."""

from __future__ import annotations

import re

from engine.errors import InvalidParameter
from engine.pipelines import Pipeline

MAX_VALUE_LENGTH = 4096


def describe_parameter(name: str, pipeline: Pipeline) -> str:
    spec = pipeline.parameters[name]
    parts = [name]
    if spec.choices:
        parts.append(f"one of {', '.join(spec.choices)}")
    if spec.pattern:
        parts.append(f"matching {spec.pattern}")
    if spec.default is not None:
        parts.append(f"default {spec.default!r}")
    elif spec.required:
        parts.append("required")
    return " ".join(parts)


def resolve_parameters(pipeline: Pipeline, given: dict[str, str]) -> dict[str, str]:
    """The run's parameters: given values checked, defaults filled in.

    Raises :class:`InvalidParameter` naming what is wrong and what is valid.
    """
    declared = pipeline.parameters
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "none"
        raise InvalidParameter(
            f"Unknown parameter {', '.join(unknown)} for `{pipeline.name}`. "
            f"Valid parameters: {valid}.",
            unknown[0],
        )
    resolved: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
        elif spec.default is not None:
            value = spec.default
        elif spec.required:
            raise InvalidParameter(
                f"Missing required parameter `{name}` ({describe_parameter(name, pipeline)}).",
                name,
            )
        else:
            continue
        _check_value(pipeline, name, value)
        resolved[name] = value
    return resolved


def _check_value(pipeline: Pipeline, name: str, value: str) -> None:
    spec = pipeline.parameters[name]
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidParameter(f"`{name}` is longer than {MAX_VALUE_LENGTH} characters.", name)
    if "\x00" in value:
        raise InvalidParameter(f"`{name}` contains a NUL character.", name)
    if spec.choices is not None and value not in spec.choices:
        raise InvalidParameter(
            f"`{name}` must be one of {', '.join(spec.choices)} (got {value!r}).", name
        )
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise InvalidParameter(f"`{name}` must match {spec.pattern} (got {value!r}).", name)
