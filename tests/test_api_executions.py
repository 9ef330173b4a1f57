"""Executions through the real server: create, detail, list, cancel, logs, errors."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from storage.models import CICDTool, Run
from tests.api_support import ADMIN, SECRET, api_server, bearer, write_standard
from tests.helpers import eventually, write_pipeline

E = "/api/v1/cicd/executions/"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_create_then_detail_until_success(database_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        reply = await api.call(
            "POST", E, json={"pipeline": "simple", "parameters": {"version": 2.5, "env": "staging"}}
        )
        assert reply.status == 201, reply.body
        created = reply.body
        assert reply.headers["Location"] == f"{E}{created['id']}/"
        assert created["pipeline"] == "simple"
        assert created["trigger_type"] == "api"
        assert created["triggered_by"] == "U222"
        assert created["parameters"] == {"version": "2.5", "env": "staging"}
        assert created["status"] in ("running", "success")  # its real state, not "pending"
        assert [s["name"] for s in created["steps"]] == ["build", "test"]
        done = await api.wait_finished(created["id"])
        detail = await api.call("GET", f"{E}{created['id']}/")
        assert detail.status == 200
        body = detail.body
        assert body == done
        assert body["status"] == "success"
        for key in ("created_at", "started_at", "finished_at"):
            assert ISO_UTC.match(body[key]), body[key]
        started, ended = (datetime.fromisoformat(body[k]) for k in ("started_at", "finished_at"))
        # Two shell steps ran: some time passed, and the duration is what the times say.
        assert 0 < body["duration"] < 30
        assert body["duration"] == pytest.approx((ended - started).total_seconds(), abs=0.002)
        build = body["steps"][0]
        assert set(build) >= {
            "name",
            "kind",
            "status",
            "started_at",
            "finished_at",
            "external_url",
            "log_tail",
            "reason",
        }
        assert build["kind"] == "run" and build["status"] == "success"
        assert build["log_tail"] == "building 2.5 for staging"
        assert body["approvals"] == [] and body["reason"] is None


async def test_create_by_pipeline_id_follows_the_pipelines_list(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        listing = await api.call("GET", "/api/v1/pipelines/", user="U111")
        ids = {p["name"]: p["id"] for p in listing.body["results"]}
        assert ids == {"restricted": 1, "simple": 2, "slow": 3}
        simple = next(p for p in listing.body["results"] if p["name"] == "simple")
        assert simple["parameters"][0] == {
            "name": "env",
            "default": "staging",
            "required": False,
            "choices": ["staging", "production"],
            "pattern": None,
            "description": None,
        }
        # U222 may not run `restricted`: it is not listed, and the other ids stay put.
        mine = await api.call("GET", "/api/v1/pipelines/", user="U222")
        assert {p["name"]: p["id"] for p in mine.body["results"]} == {"simple": 2, "slow": 3}
        reply = await api.call("POST", E, json={"pipeline_id": 2, "trigger_type": "manual"})
        assert reply.status == 201 and reply.body["pipeline"] == "simple"
        assert reply.body["trigger_type"] == "manual"
        missing = await api.call("POST", E, json={"pipeline_id": 9})
        assert missing.status == 404
        clash = await api.call("POST", E, json={"pipeline_id": 2, "pipeline": "slow"})
        assert clash.status == 400
        await api.wait_finished(reply.body["id"])


async def test_bad_bodies_are_400_or_404_and_create_nothing(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"data": b"{not json"}, 400, "not valid JSON"),
            ({"data": b""}, 400, "empty"),
            ({"json": ["simple"]}, 400, "JSON object"),
            ({"json": {}}, 400, "pipeline"),
            ({"json": {"pipeline": 5}}, 400, "pipeline"),
            ({"json": {"pipeline_id": "2"}}, 400, "integer"),
            ({"json": {"pipeline_id": True}}, 400, "integer"),
            ({"json": {"pipeline": "simple", "trigger_type": "cron"}}, 400, "trigger_type"),
            ({"json": {"pipeline": "simple", "parameters": []}}, 400, "parameters"),
            ({"json": {"pipeline": "simple", "parameters": {"env": None}}}, 400, "env"),
            ({"json": {"pipeline": "simple", "parameters": {"env": ["a"]}}}, 400, "env"),
            ({"json": {"pipeline": "simple", "colour": "red"}}, 400, "colour"),
            ({"json": {"pipeline": "simple", "cicd_tool_id": "x"}}, 400, "integer"),
            (
                {"json": {"pipeline": "simple", "parameters": {"env": "prod"}}},
                400,
                "staging, production",
            ),
            ({"json": {"pipeline": "simple", "parameters": {"version": "v1"}}}, 400, "match"),
            ({"json": {"pipeline": "simple", "parameters": {"nope": "1"}}}, 400, "Unknown"),
            ({"json": {"pipeline": "simpel"}}, 404, "Did you mean simple"),
            ({"json": {"pipeline": "simple", "cicd_tool_id": 42}}, 404, "42"),
        ]
        for kwargs, status, fragment in cases:
            reply = await api.call("POST", E, **kwargs)  # type: ignore[arg-type]
            assert reply.status == status, (kwargs, reply.body)
            assert set(reply.body) >= {"error", "detail"}
            assert fragment in str(reply.body["detail"]), (kwargs, reply.body)
        assert await Run.all().count() == 0


async def test_allowed_users_give_403_and_hide_runs(sqlite_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        refused = await api.call("POST", E, json={"pipeline": "restricted"}, user="U222")
        assert refused.status == 403 and refused.body["error"] == "forbidden"
        assert "not allowed" in refused.body["detail"]
        assert await Run.all().count() == 0
        ok = await api.call("POST", E, json={"pipeline": "restricted"}, user="U111")
        assert ok.status == 201
        run_id = ok.body["id"]
        await api.wait_finished(run_id)
        assert (await api.call("GET", f"{E}{run_id}/", user="U222")).status == 403
        assert (await api.call("GET", f"{E}{run_id}/logs/", user="U222")).status == 403
        assert (await api.call("POST", f"{E}{run_id}/cancel/", user="U222")).status == 403
        assert (await api.call("GET", f"{E}{run_id}/", user=ADMIN)).status == 200
        assert (await api.call("GET", E, user="U222")).body["count"] == 0
        assert (await api.call("GET", E, user="U111")).body["count"] == 1
        assert (await api.call("GET", E, user=ADMIN)).body["count"] == 1


async def test_list_filters_and_pagination(sqlite_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        ids = []
        for _ in range(5):
            reply = await api.call("POST", E, json={"pipeline": "simple"})
            ids.append(reply.body["id"])
        slow = await api.call("POST", E, json={"pipeline": "slow"})
        for run_id in ids:
            await api.wait_finished(run_id)
        first = await api.call("GET", f"{E}?pipeline=simple&page_size=2")
        assert first.body["count"] == 5
        assert [r["id"] for r in first.body["results"]] == ids[::-1][:2]
        assert first.body["previous"] is None
        seen = [r["id"] for r in first.body["results"]]
        next_url = first.body["next"]
        for _ in range(5):
            if next_url is None:
                break
            async with api.http.get(next_url, headers=bearer("U222")) as resp:
                page = await resp.json()
            assert page["previous"] is not None
            seen += [r["id"] for r in page["results"]]
            next_url = page["next"]
        assert seen == ids[::-1]
        running = await api.call("GET", f"{E}?status=running")
        assert [r["id"] for r in running.body["results"]] == [slow.body["id"]]
        success = await api.call("GET", f"{E}?status=success&pipeline=simple")
        assert success.body["count"] == 5
        assert (await api.call("GET", f"{E}?status=sleeping")).status == 400
        for bad in ("page=0", "page_size=0", "page_size=1000", "page=x", "page_size=²"):
            assert (await api.call("GET", f"{E}?{bad}")).status == 400, bad
        empty = await api.call("GET", f"{E}?page=50")
        assert empty.status == 200 and empty.body["results"] == []
        await api.call("POST", f"{E}{slow.body['id']}/cancel/")
        await api.wait_finished(slow.body["id"])


async def test_cancel_then_cancel_again_is_409(database_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "slow"})).body
        await eventually(
            lambda: api.call("GET", f"{E}{run['id']}/"),
            lambda r: r.body["steps"][0]["status"] == "running",
        )
        stranger = await api.call("POST", f"{E}{run['id']}/cancel/", user="U999")
        assert stranger.status == 403
        reply = await api.call("POST", f"{E}{run['id']}/cancel/")
        assert reply.status in (200, 202), reply.body
        assert reply.body["id"] == run["id"]
        done = await api.wait_finished(run["id"])
        assert done["status"] == "cancelled"
        assert [s["status"] for s in done["steps"]] == ["cancelled", "skipped"]
        again = await api.call("POST", f"{E}{run['id']}/cancel/")
        assert again.status == 409 and again.body["error"] == "conflict"
        assert (await api.call("POST", f"{E}999/cancel/")).status == 404


async def test_logs_as_plain_text(sqlite_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "simple"})).body
        await api.wait_finished(run["id"])
        one = await api.call("GET", f"{E}{run['id']}/logs/?step=build")
        assert one.status == 200 and one.headers["Content-Type"].startswith("text/plain")
        assert one.text.strip() == "building 1.0 for staging"
        everything = await api.call("GET", f"{E}{run['id']}/logs/")
        assert "==> build (success) <==" in everything.text
        assert "==> test (success) <==\ntested" in everything.text
        missing = await api.call("GET", f"{E}{run['id']}/logs/?step=deploy")
        assert missing.status == 404 and "build, test" in missing.body["detail"]
        assert (await api.call("GET", f"{E}12345/logs/")).status == 404


async def test_the_logs_give_the_whole_output_the_execution_its_tail(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_pipeline(
        pipelines_dir,
        "chatty",
        "name: chatty\nsteps:\n"
        "  - name: count\n    run: 'for i in $(seq 1 300); do echo line $i; done'\n"
        "  - name: after\n    run: echo done\n",
    )
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "chatty"})).body
        done = await api.wait_finished(run["id"])
        assert done["status"] == "success"
        tail = done["steps"][0]["log_tail"].splitlines()
        assert tail[-1] == "line 300" and len(tail) < 300
        whole = await api.call("GET", f"{E}{run['id']}/logs/?step=count")
        assert whole.text.splitlines() == [f"line {i}" for i in range(1, 301)]


async def test_inactive_tool_refuses_with_409(database_url: str, pipelines_dir: Path) -> None:
    write_pipeline(
        pipelines_dir,
        "deploy",
        """\
name: deploy
steps:
  - name: Deploy
    jenkins: {tool: ci, job: deploy-web}
""",
    )
    write_standard(pipelines_dir)
    async with api_server(database_url, pipelines_dir) as api:
        tool = await CICDTool.create(
            name="ci", url="http://ci.example", token="tok-SECRET-1", status="inactive"
        )
        reply = await api.call("POST", E, json={"pipeline": "deploy"})
        assert reply.status == 409
        assert reply.body["error"] == "CI/CD tool is not active"
        assert "CI/CD tool is not active" in reply.body["detail"]
        by_id = await api.call("POST", E, json={"pipeline": "simple", "cicd_tool_id": tool.id})
        assert by_id.status == 409 and by_id.body["error"] == "CI/CD tool is not active"
        assert await Run.all().count() == 0


async def test_tools_never_show_tokens_and_only_admins_patch(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    async with api_server(sqlite_url, pipelines_dir) as api:
        tool = await CICDTool.create(
            name="ci", url="https://bot:pw-in-url@ci.example/", username="bot", token="tok-SECRET-1"
        )
        listing = await api.call("GET", "/api/v1/cicd/tools/")
        assert listing.status == 200
        assert listing.body["results"][0]["name"] == "ci"
        assert listing.body["results"][0]["url"] == "https://ci.example/"
        assert "tok-SECRET-1" not in listing.text and "pw-in-url" not in listing.text
        path = f"/api/v1/cicd/tools/{tool.id}/"
        assert (await api.call("PATCH", path, json={"status": "inactive"})).status == 403
        patched = await api.call("PATCH", path, json={"status": "inactive"}, user=ADMIN)
        assert patched.status == 200 and patched.body["status"] == "inactive"
        assert "tok-SECRET-1" not in patched.text
        assert (await CICDTool.get(id=tool.id)).status == "inactive"
        bodies: list[object] = [
            {"status": "broken"},
            {"status": "active", "url": "x"},
            {"token": "t"},
            [],
        ]
        for body in bodies:
            reply = await api.call("PATCH", path, json=body, user=ADMIN)
            assert reply.status == 400, body
        assert (await CICDTool.get(id=tool.id)).status == "inactive"
        assert (
            await api.call("PATCH", "/api/v1/cicd/tools/77/", json={"status": "active"}, user=ADMIN)
        ).status == 404


async def test_approve_and_reject_answer_json(sqlite_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        run = (await api.call("POST", E, json={"pipeline": "simple"})).body
        await api.wait_finished(run["id"])
        for word in ("approve", "reject"):
            reply = await api.call("POST", f"{E}{run['id']}/{word}/", json={"comment": "ok"})
            assert reply.status == 409, reply.body  # nothing waits for a decision
            assert set(reply.body) >= {"error", "detail"}
            bad = await api.call("POST", f"{E}{run['id']}/{word}/", json={"comment": 3})
            assert bad.status == 400
            assert (await api.call("POST", f"{E}4242/{word}/")).status == 404


async def test_unknown_routes_and_methods_are_json(sqlite_url: str, pipelines_dir: Path) -> None:
    async with api_server(sqlite_url, pipelines_dir) as api:
        missing = await api.call("GET", "/api/v1/nothing/")
        assert missing.status == 404 and missing.body["error"] == "not_found"
        wrong = await api.call("DELETE", E)
        assert wrong.status == 405 and wrong.body["error"] == "method_not_allowed"
        for path in (f"{E}abc/", f"{E}0/", f"{E}99999999999/", f"{E}-1/"):
            reply = await api.call("GET", path)
            assert reply.status == 404 and reply.body["error"] == "not_found", path
        assert SECRET not in missing.text


GATED = """\
name: gated
steps:
  - name: build
    run: echo built
  - name: Approve production
    approval: {approvers: [U333, U444], required: 1}
  - name: deploy
    run: echo deployed
"""


async def test_approve_and_reject_through_the_api(database_url: str, pipelines_dir: Path) -> None:
    write_pipeline(pipelines_dir, "gated", GATED)
    async with api_server(database_url, pipelines_dir) as api:
        outcomes = {}
        for word, approver in (("approve", "U333"), ("reject", "U444")):
            run = (await api.call("POST", E, json={"pipeline": "gated"})).body
            path = f"{E}{run['id']}/"
            waiting = await eventually(
                lambda p=path: api.call("GET", p), lambda r: r.body["status"] == "waiting_approval"
            )
            assert waiting.body["steps"][1]["status"] == "waiting_approval"
            starter = await api.call("POST", f"{path}{word}/", user="U222")
            assert starter.status == 403, starter.body
            reply = await api.call(
                "POST", f"{path}{word}/", user=approver, json={"comment": f"{word}d via API"}
            )
            assert reply.status == 200, reply.body
            done = await api.wait_finished(run["id"])
            outcomes[word] = done["status"]
            assert [
                (a["user"], a["decision"], a["comment"], a["step"]) for a in done["approvals"]
            ] == [(approver, word, f"{word}d via API", "Approve production")]
            again = await api.call("POST", f"{path}{word}/", user=approver)
            assert again.status == 409
        assert outcomes == {"approve": "success", "reject": "failed"}
