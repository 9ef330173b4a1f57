"""Loading pipeline files from a folder: each invalid file is reported and skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.pipelines.messages import describe, missing_folder, split_place
from engine.pipelines.references import (
    declared_parameters,
    reference_message,
    reference_sites,
    undeclared_references,
)
from engine.pipelines.schema import Pipeline


@dataclass(frozen=True)
class FileProblem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class Catalog:
    """The pipelines that loaded, and what was wrong with the files that did not."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    problems: list[FileProblem] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)

    def get(self, name: str) -> Pipeline | None:
        return self.pipelines.get(name)


def _line_of(
    node: yaml.Node | None, loc: tuple[int | str, ...], key_line: bool = False
) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its closest ancestor.

    With ``key_line``, the line of the last key itself rather than of its value.
    """
    line = node.start_mark.line + 1 if node is not None else None
    for index, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next((kv for kv in node.value if getattr(kv[0], "value", None) == part), None)
            if pair is None:
                return line
            if key_line and index == len(loc) - 1:
                return int(pair[0].start_mark.line) + 1
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None) -> list[tuple[int, str]]:
    """(line, message) for each key written twice in one mapping (YAML keeps the last)."""
    found: list[tuple[int, str]] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                text = getattr(key, "value", None)
                line = key.start_mark.line + 1
                if isinstance(text, str) and text in seen:
                    found.append(
                        (
                            line,
                            f"key `{text}` is written twice (also on line {seen[text]}); keep one",
                        )
                    )
                elif isinstance(text, str):
                    seen[text] = line
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return sorted(found)


def _yaml_problem(exc: yaml.YAMLError, path: Path) -> FileProblem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if "'\\t'" in problem:
        problem += " (indent with spaces, not tabs)"
    return FileProblem(path, line, f"YAML syntax error: {problem}")


def _reference_problems(data: Any, node: yaml.Node | None, path: Path) -> list[FileProblem]:
    declared = declared_parameters(data)
    problems = []
    for loc, what, text in reference_sites(data):
        for name in undeclared_references(text, declared):
            place, _ = split_place(loc, data)
            message = reference_message(what, name, declared)
            text = f"{place}: {message}" if place else message
            problems.append(FileProblem(path, _line_of(node, loc), text))
    return problems


@dataclass(frozen=True)
class _Parsed:
    pipeline: Pipeline | None
    problems: list[FileProblem]
    name: str | None = None  # the name the file declares, even when it is invalid
    name_line: int | None = None


# libyaml's parser when PyYAML was built with it (some ten times faster than the
# pure-Python one, which stays the fallback). They differ only around tabs (libyaml
# takes a tab where PyYAML's own parser refuses one) and in the wording of errors.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_and_construct(text: str, loader_class: type[yaml.SafeLoader]) -> tuple[Any, Any]:
    """The document's node tree (for line numbers) and its data, from one parse.

    Building the data rewrites a mapping's node in place where a merge key
    (``<<: *defaults``) pulls in another's keys; the tree must stay as written
    (lines, keys written twice), so such a file is parsed a second time for it.
    """
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    if "<<" in text:
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    return node, data


def _load_yaml(text: str) -> tuple[Any, Any]:
    """What PyYAML's pure-Python SafeLoader would give, or the error it would raise.

    A file with a tab, or one libyaml refuses, is parsed by the pure-Python
    loader itself: the same files load, and a broken one is reported in the
    same words (libyaml's are terser, e.g. they do not name a tab).
    """
    if _FAST_LOADER is not yaml.SafeLoader and "\t" not in text:
        try:
            return _compose_and_construct(text, _FAST_LOADER)
        except yaml.YAMLError:
            pass
    return _compose_and_construct(text, yaml.SafeLoader)


def _parse(text: str, path: Path) -> _Parsed:
    try:
        node, data = _load_yaml(text)
    except yaml.YAMLError as exc:
        return _Parsed(None, [_yaml_problem(exc, path)])
    if not isinstance(data, dict):
        message = "a pipeline file holds one mapping (name:, steps:, ...)"
        return _Parsed(None, [FileProblem(path, 1, message)])
    name = data.get("name") if isinstance(data.get("name"), str) else None
    name_line = _line_of(node, ("name",))
    problems = [FileProblem(path, line, message) for line, message in _duplicate_keys(node)]
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc, message = describe(dict(error), data)
            line = _line_of(node, loc, key_line=error["type"] == "extra_forbidden")
            problems.append(FileProblem(path, line, message))
    problems.extend(_reference_problems(data, node, path))
    problems.sort(key=lambda p: p.line or 0)
    return _Parsed(None if problems else pipeline, problems, name, name_line)


def parse_pipeline(text: str, path: Path) -> tuple[Pipeline | None, list[FileProblem]]:
    """The pipeline in ``text``, or None and every problem found (each with its line)."""
    parsed = _parse(text, path)
    return parsed.pipeline, parsed.problems


def load_catalog(folder: Path) -> Catalog:
    catalog = Catalog()
    if not folder.is_dir():
        catalog.problems.append(FileProblem(folder, None, missing_folder(folder)))
        return catalog
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    # The first file (in name order) that declares a name owns it, valid or not.
    owners: dict[str, Path] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            catalog.problems.append(FileProblem(path, None, f"cannot read: {exc}"))
            continue
        parsed = _parse(text, path)
        catalog.problems.extend(parsed.problems)
        if parsed.name is None:
            continue
        if parsed.name in owners:
            first = owners[parsed.name]
            message = (
                f"duplicate pipeline name `{parsed.name}`: {first} already uses it; "
                "each pipeline needs a name of its own"
            )
            catalog.problems.append(FileProblem(path, parsed.name_line, message))
            continue
        owners[parsed.name] = path
        if parsed.pipeline is not None:
            catalog.pipelines[parsed.name] = parsed.pipeline
            catalog.sources[parsed.name] = path
    return catalog
