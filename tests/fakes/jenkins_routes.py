"""URL routing of the fake Jenkins: which request reads or changes which state.

Called with the state lock held and the clock already advanced; an HTTP error
is raised as `Refused` (status + text), the way Jenkins answers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes import jenkins_json as render
from tests.fakes.jenkins_state import Build, JenkinsState, Job, Refused


def route(
    state: JenkinsState, base: str, crumb: str | None, request: web.Request, user: str
) -> web.Response:
    """Answer an authenticated request; `crumb` is None when crumbs are off."""
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["job"]:
        return _job_route(state, base, request, parts, user)
    method, path = request.method, "/".join(parts)
    if method == "GET" and path == "crumbIssuer/api/json":
        if crumb is None:
            raise Refused(404, "Not Found")
        return _json(
            {
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": crumb,
                "crumbRequestField": "Jenkins-Crumb",
            }
        )
    if method == "GET" and path == "me/api/json":
        me = {"_class": "hudson.model.User", "id": user, "fullName": user}
        return _json({**me, "absoluteUrl": f"{base}user/{user}"})
    if method == "GET" and path == "api/json":
        use_crumbs = crumb is not None
        return _tree(request, lambda deep: render.root_json(state, base, deep, use_crumbs))
    if method == "GET" and path == "queue/api/json":
        return _tree(request, lambda deep: render.queue_json(state, base))
    if method == "GET" and path == "computer/api/json":
        return _tree(request, lambda deep: render.computer_json(state, base, deep))
    if method == "GET" and len(parts) == 5 and parts[:2] == ["queue", "item"]:
        item = state.queue.get(_int(parts[2]))
        if item is None or parts[3:] != ["api", "json"]:
            raise Refused(404, "Not Found")
        return _tree(request, lambda deep: render.queue_item_json(state, base, item))
    if method == "POST" and path == "queue/cancelItem":
        item_id = _int(request.query.get("id", ""))
        if not state.cancel_item(item_id):
            raise Refused(404, f"Unknown item with id {item_id}")
        return web.Response(status=204)
    raise Refused(404 if method == "GET" else 405, "Not Found")


def _job_route(
    state: JenkinsState, base: str, request: web.Request, parts: list[str], user: str
) -> web.Response:
    names: list[str] = []
    while len(parts) >= 2 and parts[0] == "job":
        names.append(parts[1])
        parts = parts[2:]
    name, method = "/".join(names), request.method
    if name in state.folders() and name not in state.jobs:
        if method == "GET" and parts == ["api", "json"]:
            return _tree(request, lambda deep: render.folder_json(state, base, name, deep))
        if method == "GET" and not parts:
            return _html(name)
        raise Refused(404, "Not Found")
    job = state.job(name)
    if method == "GET" and parts == ["api", "json"]:
        return _tree(request, lambda deep: render.job_json(state, base, job, deep))
    if method == "GET" and not parts:
        return _html(name)
    if method == "POST" and parts in (["build"], ["buildWithParameters"]):
        with_params = parts == ["buildWithParameters"]
        item, created = state.schedule(name, dict(request.query) if with_params else None, user)
        # Jenkins >= 2.308: an identical waiting item is answered 303 by
        # buildWithParameters; /build answers 201 with the existing item.
        status = 201 if created or not with_params else 303
        return web.Response(status=status, headers={"Location": f"{base}queue/item/{item.id}/"})
    if not parts:
        raise Refused(405, "Method Not Allowed")
    build = state.build(name, _build_number(job, parts[0]))
    return _build_route(state, base, request, build, parts[1:], user)


def _build_route(
    state: JenkinsState,
    base: str,
    request: web.Request,
    build: Build,
    rest: list[str],
    user: str,
) -> web.Response:
    method = request.method
    if method == "GET" and rest == ["api", "json"]:
        return _tree(request, lambda deep: render.build_json(state, base, build))
    if method == "GET" and not rest:
        return _html(f"{build.job} #{build.number}")
    if method == "GET" and rest == ["consoleText"]:
        return web.Response(text=state.console(build), content_type="text/plain")
    if method == "GET" and rest == ["logText", "progressiveText"]:
        data = state.console(build).encode()
        start = _int(request.query.get("start", "0"))
        start = start if 0 <= start <= len(data) else 0
        headers = {"X-Text-Size": str(len(data))}
        if build.building:
            headers["X-More-Data"] = "true"
        return web.Response(
            body=data[start:], headers=headers, content_type="text/plain", charset="utf-8"
        )
    if method == "POST" and rest == ["stop"]:
        state.request_stop(build.job, build.number, user)
        return web.Response(status=302, headers={"Location": render.build_url(base, build)})
    raise Refused(404, "Not Found")


def _build_number(job: Job, segment: str) -> int:
    if segment == "lastBuild":
        return max(job.builds, default=0)
    return _int(segment)


def _tree(request: web.Request, make: Callable[[bool], Any]) -> web.Response:
    """Full JSON at depth 0, or (with `?tree=`) just the fields asked for."""
    tree = request.query.get("tree")
    if not tree:
        return _json(make(False))
    try:
        spec = render.parse_tree(tree)
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc
    return _json(render.apply_tree(make(True), spec))


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json", charset="utf-8")


def _html(title: str) -> web.Response:
    return web.Response(text=f"<html>{title} [Jenkins]</html>", content_type="text/html")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Refused(404, "Not Found") from None
