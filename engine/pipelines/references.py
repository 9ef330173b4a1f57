"""``${name}`` references to parameters, and the ones that name no declared parameter.

Jenkins step parameters and a pipeline's concurrency group may refer to the
run's parameters as ``${name}``. A reference to a parameter the pipeline does
not declare would be used as written, so the loader reports it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any

from engine.pipelines.messages import closest

Loc = tuple[int | str, ...]

# Anything between ${ and }: a well-formed name, or something that was meant to be one.
_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def undeclared_references(text: str, declared: Collection[str]) -> list[str]:
    """The names inside ``${...}`` in ``text`` that are not in ``declared``, in order, once each."""
    found: list[str] = []
    for match in _REFERENCE.finditer(text):
        name = match.group(1)
        if name not in declared and name not in found:
            found.append(name)
    return found


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def declared_parameters(data: Any) -> list[str]:
    """The parameter names a file's raw mapping declares, in its order."""
    return [str(k) for k in _mapping(_mapping(data).get("parameters"))]


def reference_sites(data: Any) -> Iterator[tuple[Loc, str, str]]:
    """Every text of a file's raw mapping that may hold ``${name}``: (location, what, text).

    Read from the raw mapping, so a file with other errors is checked too.
    """
    for index, stage in enumerate(_list(_mapping(data).get("steps"))):
        inner = _mapping(stage).get("parallel")
        leaves: list[tuple[Loc, Any]] = (
            [((index, "parallel", j), leaf) for j, leaf in enumerate(inner)]
            if isinstance(inner, list)
            else [((index,), stage)]
        )
        for prefix, leaf in leaves:
            parameters = _mapping(_mapping(_mapping(leaf).get("jenkins")).get("parameters"))
            for key, value in parameters.items():
                if isinstance(value, str):
                    loc: Loc = ("steps", *prefix, "jenkins", "parameters", key)
                    yield loc, f"Jenkins parameter {key}", value
    group = _mapping(_mapping(data).get("concurrency")).get("group")
    if isinstance(group, str):
        yield ("concurrency", "group"), "the concurrency group", group


def reference_message(what: str, name: str, declared: Collection[str]) -> str:
    """``${name}`` in ``what`` names no declared parameter: say so and list the declared ones."""
    text = f"{what} uses `${{{name}}}`, but the pipeline declares no parameter `{name}`"
    if not declared:
        return text + "; it declares no parameters (add them under `parameters:`)"
    guess = closest(name, declared)
    hint = f"; did you mean `${{{guess}}}`?" if guess else ";"
    return f"{text}{hint} declared: {', '.join(declared)}"
