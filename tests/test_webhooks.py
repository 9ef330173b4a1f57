"""``POST /hooks/pipelines/{name}`` against the real server: signatures, deliveries, bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.models import Run, WebhookDelivery
from tests.api_support import Api, api_server
from tests.helpers import write_pipeline

KEY = "webhook-key-for-tests-0123456789"
ON_PUSH = """\
name: on-push
parameters:
  ref: {pattern: '^refs/heads/[a-z0-9/_-]+$', required: true}
  sha: {pattern: '^[0-9a-f]{40}$', required: true}
  author: {default: someone}
triggers:
  webhook:
    secret_env: TEST_HOOK_SECRET
    parameters: {ref: "$.ref", sha: "$.after", author: "$.head_commit.author.name"}
steps:
  - name: show
    run: echo "$ref at $sha by $author"
"""
NO_HOOK = "name: manual-only\nsteps:\n  - {name: a, run: 'true'}\n"
PUSH = {
    "ref": "refs/heads/main",
    "after": "0123456789abcdef0123456789abcdef01234567",
    "head_commit": {"author": {"name": "Ada"}},
}


def signed(
    body: bytes, key: str = KEY, event: str = "push", delivery: str | None = None
) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
    }
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


async def post(api: Api, name: str, body: bytes, headers: dict[str, str]) -> Any:
    return await api.call("POST", f"/hooks/pipelines/{name}", user=None, headers=headers, data=body)


@pytest.fixture
def hook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_HOOK_SECRET", KEY)
    return KEY


async def test_a_signed_push_starts_one_run_and_a_redelivery_answers_the_same_run(
    database_url: str, pipelines_dir: Path, hook_secret: str
) -> None:
    write_pipeline(pipelines_dir, "on-push", ON_PUSH)
    async with api_server(database_url, pipelines_dir) as api:
        body = json.dumps(PUSH).encode()
        first = await post(api, "on-push", body, signed(body, delivery="d-1"))
        assert first.status == 201, first.text
        run_id = first.body["id"]
        assert first.body["trigger_type"] == "webhook"
        assert first.body["triggered_by"] == "webhook"
        assert first.body["parameters"] == {
            "ref": "refs/heads/main",
            "sha": PUSH["after"],
            "author": "Ada",
        }
        done = await api.wait_finished(run_id)
        assert done["status"] == "success"
        assert done["steps"][0]["log_tail"] == f"refs/heads/main at {PUSH['after']} by Ada"

        again = await post(api, "on-push", body, signed(body, delivery="d-1"))
        assert again.status == 200 and again.body["id"] == run_id
        assert await Run.filter(pipeline="on-push").count() == 1
        # A new delivery of the same body is a new push event: a new run.
        other = await post(api, "on-push", body, signed(body, delivery="d-2"))
        assert other.status == 201 and other.body["id"] != run_id
        assert await WebhookDelivery.filter(pipeline="on-push").count() == 2


async def test_bad_or_missing_signatures_are_401_and_create_nothing(
    database_url: str, pipelines_dir: Path, hook_secret: str
) -> None:
    write_pipeline(pipelines_dir, "on-push", ON_PUSH)
    async with api_server(database_url, pipelines_dir) as api:
        body = json.dumps(PUSH).encode()
        wrong_key = await post(api, "on-push", body, signed(body, key="not-the-key", delivery="a"))
        tampered = await post(api, "on-push", body + b" ", signed(body, delivery="b"))
        headers = signed(body, delivery="c")
        del headers["X-Hub-Signature-256"]
        missing = await post(api, "on-push", body, headers)
        not_sha256 = await post(
            api, "on-push", body, {**signed(body), "X-Hub-Signature-256": "sha1=abc"}
        )
        for reply in (wrong_key, tampered, missing, not_sha256):
            assert reply.status == 401, reply.text
            assert set(reply.body) >= {"error", "detail"}
            assert KEY not in reply.text
        assert await Run.all().count() == 0
        assert await WebhookDelivery.all().count() == 0


async def test_the_key_is_read_from_the_environment_at_request_time(
    database_url: str, pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pipeline(pipelines_dir, "on-push", ON_PUSH)
    monkeypatch.delenv("TEST_HOOK_SECRET", raising=False)
    async with api_server(database_url, pipelines_dir) as api:
        body = json.dumps(PUSH).encode()
        unset = await post(api, "on-push", body, signed(body))
        assert unset.status == 401 and "no webhook secret" in unset.body["detail"]
        monkeypatch.setenv("TEST_HOOK_SECRET", KEY)
        now_set = await post(api, "on-push", body, signed(body))
        assert now_set.status == 201, now_set.text


async def test_ping_bad_bodies_and_unknown_pipelines(
    database_url: str, pipelines_dir: Path, hook_secret: str
) -> None:
    write_pipeline(pipelines_dir, "on-push", ON_PUSH)
    write_pipeline(pipelines_dir, "manual-only", NO_HOOK)
    async with api_server(database_url, pipelines_dir) as api:
        ping = json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode()
        pong = await post(api, "on-push", ping, signed(ping, event="ping", delivery="p"))
        assert pong.status == 200 and pong.body["status"] == "ok"

        not_json = b"ref=refs/heads/main"
        reply = await post(api, "on-push", not_json, signed(not_json, delivery="x1"))
        assert reply.status == 400 and "not valid JSON" in reply.body["detail"]

        no_after = json.dumps({"ref": "refs/heads/main"}).encode()
        reply = await post(api, "on-push", no_after, signed(no_after, delivery="x2"))
        assert reply.status == 400 and "$.after" in reply.body["detail"]

        bad_sha = json.dumps({**PUSH, "after": "$(reboot)"}).encode()
        reply = await post(api, "on-push", bad_sha, signed(bad_sha, delivery="x3"))
        assert reply.status == 400 and "`sha` must match" in reply.body["detail"]
        # Refused deliveries are not remembered as handled: the same refusal answers again.
        reply = await post(api, "on-push", bad_sha, signed(bad_sha, delivery="x3"))
        assert reply.status == 400

        nested = json.dumps({**PUSH, "after": {"id": 1}}).encode()
        reply = await post(api, "on-push", nested, signed(nested))
        assert reply.status == 400 and "a text or a number" in reply.body["detail"]

        body = json.dumps(PUSH).encode()
        unknown = await post(api, "nope", body, signed(body))
        no_trigger = await post(api, "manual-only", body, signed(body))
        assert unknown.status == no_trigger.status == 404
        assert set(unknown.body) == set(no_trigger.body) == {"error", "detail"}

        huge = b'{"ref": "' + b"a" * (1024 * 1024) + b'"}'
        too_big = await post(api, "on-push", huge, signed(huge))
        assert too_big.status == 413
        assert await Run.all().count() == 0
        assert await WebhookDelivery.all().count() == 0


async def test_the_webhook_route_is_in_the_openapi_document(
    database_url: str, pipelines_dir: Path
) -> None:
    async with api_server(database_url, pipelines_dir) as api:
        reply = await api.call("GET", "/api/v1/openapi.json", user=None)
        assert "post" in reply.body["paths"]["/hooks/pipelines/{name}"]


async def test_a_delivery_whose_run_never_came_is_taken_over_after_a_minute(
    database_url: str, pipelines_dir: Path, hook_secret: str
) -> None:
    write_pipeline(pipelines_dir, "on-push", ON_PUSH)
    async with api_server(database_url, pipelines_dir) as api:
        # A process claimed these deliveries and died before their runs were created.
        for delivery, age in (("fresh", 5), ("stale", 120)):
            await WebhookDelivery.create(pipeline="on-push", delivery_id=delivery)
            await WebhookDelivery.filter(delivery_id=delivery).update(
                created_at=datetime.now(UTC) - timedelta(seconds=age)
            )
        body = json.dumps(PUSH).encode()
        stale = await post(api, "on-push", body, signed(body, delivery="stale"))
        assert stale.status == 201, stale.text
        fresh = await post(api, "on-push", body, signed(body, delivery="fresh"))
        assert fresh.status == 409 and "send it again later" in fresh.body["detail"]
        assert await Run.all().count() == 1
