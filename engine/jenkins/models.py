"""What the Jenkins port returns, and the pure functions that read Jenkins JSON into it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

Json = Mapping[str, Any]

_QUEUE_ITEM = re.compile(r"/queue/item/(\d+)/?$")


@dataclass(frozen=True)
class QueueItem:
    """A queue item; `waiting` until Jenkins gives it a build or it is cancelled."""

    number: int
    waiting: bool
    cancelled: bool
    why: str | None
    build_number: int | None
    build_url: str | None
    job_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildInfo:
    number: int
    url: str
    building: bool
    result: str | None
    duration_ms: int
    queue_id: int | None
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunningBuild:
    url: str
    number: int
    job: str | None = None


@dataclass(frozen=True)
class ProgressiveText:
    text: str
    next_start: int
    more: bool


@dataclass(frozen=True)
class ParamDef:
    name: str
    type: str
    default: str | None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobInfo:
    full_name: str
    url: str
    buildable: bool
    parameters: list[ParamDef] = field(default_factory=list)
    next_build_number: int | None = None


def job_path(full_name: str) -> str:
    """`a/b/c` -> `job/a/job/b/job/c/` (each name URL-quoted)."""
    return "".join(f"job/{quote(part, safe='')}/" for part in full_name.strip("/").split("/"))


def job_name_from_url(url: str) -> str | None:
    """`http://j/job/a/job/b/12/` -> `a/b`; None when the URL names no job."""
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    names: list[str] = []
    i = 0
    while i < len(parts) - 1:
        if parts[i] == "job":
            names.append(parts[i + 1])
            i += 2
        else:
            i += 1
    return "/".join(names) or None


def queue_number_from_url(url: str) -> int | None:
    match = _QUEUE_ITEM.search(urlsplit(url).path)
    return int(match.group(1)) if match else None


def _value(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return "" if raw is None else str(raw)


def parameters_from_actions(actions: Iterable[Any] | None) -> dict[str, str]:
    """Parameter values from the `ParametersAction` among a build's or queue item's actions."""
    values: dict[str, str] = {}
    for action in actions or ():
        if isinstance(action, Mapping):
            for param in action.get("parameters") or ():
                if isinstance(param, Mapping) and "name" in param and "value" in param:
                    values[str(param["name"])] = _value(param["value"])
    return values


def parse_queue_item(data: Json) -> QueueItem:
    executable = data.get("executable")
    task = data.get("task")
    cls = str(data.get("_class", ""))
    left = cls.endswith("$LeftItem") if cls else "executable" in data
    waiting = not left and not data.get("cancelled", False)
    return QueueItem(
        number=int(data["id"]),
        waiting=waiting,
        cancelled=bool(data.get("cancelled", False)),
        why=data.get("why"),
        build_number=int(executable["number"]) if executable else None,
        build_url=str(executable["url"]) if executable else None,
        job_url=str(task["url"]) if isinstance(task, Mapping) and "url" in task else None,
        parameters=parameters_from_actions(data.get("actions")),
    )


def parse_build(data: Json) -> BuildInfo:
    queue_id = data.get("queueId")
    return BuildInfo(
        number=int(data["number"]),
        url=str(data["url"]),
        building=bool(data.get("building", False)),
        result=data.get("result"),
        duration_ms=int(data.get("duration") or 0),
        queue_id=int(queue_id) if queue_id is not None else None,
        parameters=parameters_from_actions(data.get("actions")),
    )


def parse_running(data: Json) -> list[RunningBuild]:
    """Running builds from `computer/api/json?tree=computer[executors[…],oneOffExecutors[…]]`."""
    found: dict[str, RunningBuild] = {}
    for computer in data.get("computer") or ():
        for executor in [*computer.get("executors", ()), *computer.get("oneOffExecutors", ())]:
            current = executor.get("currentExecutable") if executor else None
            if current and "url" in current and "number" in current:
                url = str(current["url"])
                found[url] = RunningBuild(url, int(current["number"]), job_name_from_url(url))
    return list(found.values())


def _param_def(data: Json) -> ParamDef:
    raw_type = str(data.get("type") or data.get("_class", "").rsplit(".", 1)[-1])
    kind = raw_type.removesuffix("ParameterDefinition").lower() or raw_type
    default = data.get("defaultParameterValue")
    return ParamDef(
        name=str(data["name"]),
        type=kind,
        default=_value(default.get("value")) if isinstance(default, Mapping) else None,
        choices=tuple(str(c) for c in data.get("choices") or ()),
    )


def parse_job(full_name: str, data: Json) -> JobInfo:
    params: list[ParamDef] = []
    for prop in data.get("property") or ():
        for definition in (prop or {}).get("parameterDefinitions") or ():
            params.append(_param_def(definition))
    next_number = data.get("nextBuildNumber")
    return JobInfo(
        full_name,
        str(data["url"]),
        bool(data.get("buildable", False)),
        params,
        int(next_number) if next_number is not None else None,
    )


def walk_jobs(prefix: str, jobs: Iterable[Json]) -> tuple[list[JobInfo], list[str]]:
    """Jobs found in a (possibly nested) `jobs` list, and folders whose content was cut off."""
    found: list[JobInfo] = []
    unfinished: list[str] = []
    for item in jobs:
        if "name" not in item:
            continue
        full_name = f"{prefix}/{item['name']}" if prefix else str(item["name"])
        children = item.get("jobs")
        if isinstance(children, list):
            if any("name" not in child for child in children):
                unfinished.append(full_name)
            else:
                more, deeper = walk_jobs(full_name, children)
                found += more
                unfinished += deeper
        else:
            found.append(parse_job(full_name, item))
    return found, unfinished
