"""Loading pipeline files from a folder: each invalid file is reported and skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its closest ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _describe(error: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    # Drop pydantic's discriminator tags ('run', 'approval', ...) from the location.
    raw = tuple(error["loc"])
    loc = tuple(
        p for i, p in enumerate(raw) if not (p in _TAGS and i > 0 and isinstance(raw[i - 1], int))
    )
    path = ".".join(str(p) for p in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    return loc, f"{path}: {message}" if path else message


_TAGS = {"run", "approval", "jenkins", "parallel"}


def parse_pipeline(text: str, path: Path) -> tuple[Pipeline | None, list[FileProblem]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [FileProblem(path, line, f"YAML syntax error: {problem}")]
    if not isinstance(data, dict):
        return None, [
            FileProblem(path, 1, "a pipeline file holds one mapping (name:, steps:, ...)")
        ]
    try:
        return Pipeline.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(dict(error))
            problems.append(FileProblem(path, _line_of(node, loc), message))
        return None, problems


def load_catalog(folder: Path) -> Catalog:
    catalog = Catalog()
    if not folder.is_dir():
        catalog.problems.append(FileProblem(folder, None, "pipelines folder does not exist"))
        return catalog
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            catalog.problems.append(FileProblem(path, None, f"cannot read: {exc}"))
            continue
        pipeline, problems = parse_pipeline(text, path)
        catalog.problems.extend(problems)
        if pipeline is None:
            continue
        if pipeline.name in catalog.pipelines:
            first = catalog.sources[pipeline.name]
            catalog.problems.append(
                FileProblem(path, 1, f"duplicate pipeline name {pipeline.name!r} (also in {first})")
            )
            continue
        catalog.pipelines[pipeline.name] = pipeline
        catalog.sources[pipeline.name] = path
    return catalog
