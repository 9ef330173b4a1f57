"""JSON shapes of the fake Jenkins, as Jenkins 2.4xx renders them, and `?tree=`.

`deep=False` renders what Jenkins sends at `depth=0` (nested objects cut
down to `_class`, `number`, `url`...). `deep=True` renders every nested object in
full, which is what `apply_tree` then cuts down to the fields a `tree=` asked for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.fakes.jenkins_state import PARAM_TYPES, RESULTS, Build, JenkinsState, Job, QueueItem

Json = dict[str, Any]
TreeSpec = dict[str, "tuple[TreeSpec | None, tuple[int | None, int | None] | None]"]

FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"
JOB_CLASSES = {
    "freestyle": ("hudson.model.FreeStyleProject", "hudson.model.FreeStyleBuild"),
    "pipeline": (
        "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    ),
}
COLORS = {
    "SUCCESS": "blue",
    "UNSTABLE": "yellow",
    "FAILURE": "red",
    "ABORTED": "aborted",
    "NOT_BUILT": "notbuilt",
}


def job_url(base: str, full_name: str) -> str:
    return base + "".join(f"job/{quote(part, safe='')}/" for part in full_name.split("/"))


def build_url(base: str, build: Build) -> str:
    return f"{job_url(base, build.job)}{build.number}/"


def color(job: Job) -> str:
    if job.disabled:
        return "disabled"
    done = [b for b in job.builds.values() if not b.building]
    last = (
        COLORS.get(max(done, key=lambda b: b.number).result or "", "notbuilt")
        if done
        else "notbuilt"
    )
    return last + "_anime" if any(b.building for b in job.builds.values()) else last


def _params_action(params: dict[str, str]) -> Json:
    return {
        "_class": "hudson.model.ParametersAction",
        "parameters": [
            {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
            for k, v in params.items()
        ],
    }


def _cause_action(user: str) -> Json:
    return {
        "_class": "hudson.model.CauseAction",
        "causes": [
            {
                "_class": "hudson.model.Cause$UserIdCause",
                "shortDescription": f"Started by user {user}",
                "userId": user,
                "userName": user,
            }
        ],
    }


def build_json(state: JenkinsState, base: str, build: Build) -> Json:
    job = state.job(build.job)
    done = [b for b in job.builds.values() if b.finished is not None and b.result == "SUCCESS"]
    estimate = (
        int(sum((b.finished or 0) - b.started for b in done) / len(done) * 1000) if done else -1
    )
    duration = 0 if build.finished is None else int((build.finished - build.started) * 1000)
    actions = [_params_action(build.params)] if job.params else []
    return {
        "_class": JOB_CLASSES[job.kind][1],
        "actions": [*actions, _cause_action(build.user)],
        "artifacts": [],
        "building": build.building,
        "description": None,
        "displayName": f"#{build.number}",
        "duration": duration,
        "estimatedDuration": estimate,
        "executor": None,
        "fullDisplayName": f"{job.full_name.replace('/', ' » ')} #{build.number}",
        "id": str(build.number),
        "inProgress": build.building,
        "keepLog": False,
        "number": build.number,
        "queueId": build.queue_id,
        "result": build.result,
        "timestamp": build.started_ms,
        "url": build_url(base, build),
        "builtOn": "",
        "changeSet": {"_class": "hudson.scm.EmptyChangeLogSet", "items": [], "kind": None},
        "culprits": [],
    }


def _build_ref(state: JenkinsState, base: str, build: Build | None, deep: bool) -> Json | None:
    if build is None:
        return None
    if deep:
        return build_json(state, base, build)
    cls = JOB_CLASSES[state.job(build.job).kind][1]
    return {"_class": cls, "number": build.number, "url": build_url(base, build)}


def _last(job: Job, results: frozenset[str] | None = None) -> Build | None:
    """The newest build, or the newest finished with one of `results`."""
    builds = [b for b in job.builds.values() if results is None or b.result in results]
    return max(builds, key=lambda b: b.number) if builds else None


def _param_definitions(job: Job) -> list[Json]:
    out = []
    for d in job.params:
        definition: Json = {
            "_class": f"hudson.model.{PARAM_TYPES[d.type]}",
            "defaultParameterValue": {
                "_class": f"hudson.model.{PARAM_TYPES[d.type].replace('Definition', 'Value')}",
                "name": d.name,
                "value": (d.default == "true") if d.type == "boolean" else d.default,
            },
            "description": "",
            "name": d.name,
            "type": PARAM_TYPES[d.type],
        }
        if d.type == "choice":
            definition["choices"] = list(d.choices)
        out.append(definition)
    return out


def job_json(state: JenkinsState, base: str, job: Job, deep: bool) -> Json:
    ordered = sorted(job.builds.values(), key=lambda b: -b.number)[:100]
    waiting = [i for i in state.waiting_items() if i.job == job.full_name]

    def ref(build: Build | None) -> Json | None:
        return _build_ref(state, base, build, deep)

    first = job.builds[min(job.builds)] if job.builds else None
    props: list[Json] = []
    if job.params:
        props.append(
            {
                "_class": "hudson.model.ParametersDefinitionProperty",
                "parameterDefinitions": _param_definitions(job),
            }
        )
    return {
        "_class": JOB_CLASSES[job.kind][0],
        "actions": [],
        "description": "",
        "displayName": job.short_name,
        "fullDisplayName": job.full_name.replace("/", " » "),
        "fullName": job.full_name,
        "name": job.short_name,
        "url": job_url(base, job.full_name),
        "buildable": not job.disabled,
        "builds": [ref(b) for b in ordered],
        "color": color(job),
        "firstBuild": ref(first),
        "healthReport": [],
        "inQueue": bool(waiting),
        "keepDependencies": False,
        "lastBuild": ref(_last(job)),
        "lastCompletedBuild": ref(_last(job, RESULTS)),
        "lastFailedBuild": ref(_last(job, frozenset({"FAILURE"}))),
        "lastSuccessfulBuild": ref(_last(job, frozenset({"SUCCESS", "UNSTABLE"}))),
        "nextBuildNumber": job.next_build_number,
        "property": props,
        "queueItem": queue_item_json(state, base, waiting[0]) if waiting else None,
        "concurrentBuild": True,
        "disabled": job.disabled,
    }


def _child_json(state: JenkinsState, base: str, name: str, is_folder: bool, deep: bool) -> Json:
    if is_folder:
        if deep:
            return folder_json(state, base, name, deep)
        return {"_class": FOLDER_CLASS, "name": name.rsplit("/", 1)[-1], "url": job_url(base, name)}
    job = state.jobs[name]
    if deep:
        return job_json(state, base, job, deep)
    return {
        "_class": JOB_CLASSES[job.kind][0],
        "name": job.short_name,
        "url": job_url(base, name),
        "color": color(job),
    }


def folder_json(state: JenkinsState, base: str, name: str, deep: bool) -> Json:
    return {
        "_class": FOLDER_CLASS,
        "actions": [],
        "description": None,
        "displayName": name.rsplit("/", 1)[-1],
        "fullDisplayName": name.replace("/", " » "),
        "fullName": name,
        "name": name.rsplit("/", 1)[-1],
        "url": job_url(base, name),
        "jobs": [_child_json(state, base, n, f, deep) for n, f in state.children(name)],
    }


def root_json(state: JenkinsState, base: str, deep: bool, use_crumbs: bool) -> Json:
    return {
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the Jenkins controller's built-in node",
        "nodeName": "",
        "numExecutors": 2,
        "description": None,
        "jobs": [_child_json(state, base, n, f, deep) for n, f in state.children("")],
        "quietingDown": False,
        "url": base,
        "useCrumbs": use_crumbs,
        "useSecurity": True,
        "views": [{"_class": "hudson.model.AllView", "name": "all", "url": base}],
    }


def queue_item_json(state: JenkinsState, base: str, item: QueueItem) -> Json:
    job = state.jobs.get(item.job)
    actions = [_params_action(item.params)] if item.params is not None else []
    data: Json = {
        "actions": [*actions, _cause_action(item.user)],
        "blocked": False,
        "buildable": False,
        "id": item.id,
        "inQueueSince": item.since_ms,
        "params": "".join(f"\n{k}={v}" for k, v in (item.params or {}).items()),
        "stuck": False,
        "task": {
            "_class": JOB_CLASSES[job.kind if job else "freestyle"][0],
            "name": item.job.rsplit("/", 1)[-1],
            "url": job_url(base, item.job),
            "color": color(job) if job else "notbuilt",
        },
        "url": f"queue/item/{item.id}/",
        "why": None,
    }
    if item.waiting:
        if job is not None and job.hold_queue:
            why = "Waiting for next available executor"
            data.update(
                {"_class": "hudson.model.Queue$BuildableItem", "buildable": True, "pending": False}
            )
        else:
            left = max(item.ready_at - state.clock(), 0.0)
            why = f"In the quiet period. Expires in {left:.2f} sec"
            data.update({"_class": "hudson.model.Queue$WaitingItem", "timestamp": item.since_ms})
        data["why"] = why
        return data
    data.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": item.cancelled})
    data["executable"] = None
    if item.build_number is not None and job is not None and item.build_number in job.builds:
        data["executable"] = _build_ref(state, base, job.builds[item.build_number], deep=False)
    return data


def queue_json(state: JenkinsState, base: str) -> Json:
    return {
        "_class": "hudson.model.Queue",
        "discoverableItems": [],
        "items": [queue_item_json(state, base, i) for i in state.waiting_items()],
    }


def computer_json(state: JenkinsState, base: str, deep: bool) -> Json:
    def executor(build: Build | None) -> Json:
        return {
            "_class": "hudson.model.Executor",
            "currentExecutable": _build_ref(state, base, build, deep),
        }

    running = sorted(state.running_builds(), key=lambda b: (b.job, b.number))
    heavy = [b for b in running if state.jobs[b.job].kind == "freestyle"]
    flyweight = [b for b in running if state.jobs[b.job].kind != "freestyle"]
    idle = max(2 - len(heavy), 0)
    return {
        "_class": "hudson.model.ComputerSet",
        "busyExecutors": len(heavy),
        "totalExecutors": len(heavy) + idle,
        "computer": [
            {
                "_class": "hudson.model.Hudson$MasterComputer",
                "displayName": "Built-In Node",
                "executors": [executor(b) for b in heavy] + [executor(None)] * idle,
                "oneOffExecutors": [executor(b) for b in flyweight],
                "idle": not running,
                "offline": False,
            }
        ],
    }


# -- ?tree= ------------------------------------------------------------------


def parse_tree(text: str) -> TreeSpec:
    """Parse `jobs[name,url,jobs[name]],builds[number]{0,5}` into nested specs."""
    spec, pos = _parse_fields(text, 0)
    if pos != len(text):
        raise ValueError(f"bad tree at {pos}: {text!r}")
    return spec


def _parse_fields(text: str, pos: int) -> tuple[TreeSpec, int]:
    spec: TreeSpec = {}
    while pos < len(text) and text[pos] != "]":
        start = pos
        while pos < len(text) and text[pos] not in ",[]{":
            pos += 1
        name = text[start:pos]
        sub: TreeSpec | None = None
        rng: tuple[int | None, int | None] | None = None
        if pos < len(text) and text[pos] == "[":
            sub, pos = _parse_fields(text, pos + 1)
            if pos >= len(text) or text[pos] != "]":
                raise ValueError(f"unclosed [ in tree {text!r}")
            pos += 1
        if pos < len(text) and text[pos] == "{":
            end = text.index("}", pos)
            lo, comma, hi = text[pos + 1 : end].partition(",")
            if comma:
                rng = (int(lo) if lo else None, int(hi) if hi else None)
            else:
                rng = (int(lo), int(lo) + 1)
            pos = end + 1
        if name:
            spec[name] = (sub, rng)
        if pos < len(text) and text[pos] == ",":
            pos += 1
    return spec, pos


def apply_tree(value: Any, spec: TreeSpec | None) -> Any:
    """Keep only what `spec` asks for; objects asked for without fields keep `_class`."""
    if isinstance(value, list):
        return [apply_tree(v, spec) for v in value]
    if not isinstance(value, dict):
        return value
    out: Json = {"_class": value["_class"]} if "_class" in value else {}
    for key, (sub, rng) in (spec or {}).items():
        if key not in value:
            continue
        item = value[key]
        if rng is not None and isinstance(item, list):
            item = item[rng[0] : rng[1]]
        out[key] = apply_tree(item, sub)
    return out
