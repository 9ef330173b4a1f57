"""Bearer-token authentication of the REST API, through the real server."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jwt
import pytest

from ansflow.token_cli import TtlError, cmd_token_create, parse_ttl
from api.auth import TokenError, VerifiedTokens, create_token, user_of
from tests.api_support import SECRET, api_server, make_token, write_standard
from tests.helpers import make_settings, serving

PIPELINES = "/api/v1/pipelines/"


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer <token>"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Bearer <token>"),
        ({"Authorization": "Bearer not-a-jwt"}, "malformed"),
        ({"Authorization": "Bearer a.b.c"}, "malformed"),
        ({"Authorization": f"Bearer {make_token('U222', secret='x' * 40)}"}, "signature"),
        ({"Authorization": f"Bearer {make_token('U222', ttl=-120)}"}, "expired"),
    ],
    ids=["none", "empty", "basic", "garbage", "three-parts", "wrong-secret", "expired"],
)
async def test_bad_or_missing_token_is_401_json(
    sqlite_url: str, pipelines_dir: Path, headers: dict[str, str], fragment: str
) -> None:
    write_standard(pipelines_dir)
    async with api_server(sqlite_url, pipelines_dir) as api:
        reply = await api.call("GET", PIPELINES, user=None, headers=headers)
        assert reply.status == 401
        assert reply.body["error"] == "unauthorized"
        assert fragment in reply.body["detail"]
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_forged_token_with_changed_subject_is_refused(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    header, _payload, signature = make_token("U222").split(".")
    _h, other_payload, _s = make_token("UADMIN").split(".")
    forged = f"{header}.{other_payload}.{signature}"
    async with api_server(sqlite_url, pipelines_dir) as api:
        reply = await api.call(
            "GET", PIPELINES, user=None, headers={"Authorization": f"Bearer {forged}"}
        )
        assert reply.status == 401
        assert "signature" in reply.body["detail"]


async def test_token_without_exp_or_with_none_alg_is_refused(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    import jwt

    no_exp = jwt.encode({"sub": "U222"}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({"sub": "U222", "exp": 9999999999}, None, algorithm="none")
    async with api_server(sqlite_url, pipelines_dir) as api:
        for token in (no_exp, unsigned):
            reply = await api.call(
                "GET", PIPELINES, user=None, headers={"Authorization": f"Bearer {token}"}
            )
            assert reply.status == 401, token


async def test_valid_token_is_accepted_and_never_echoed(
    sqlite_url: str, pipelines_dir: Path
) -> None:
    write_standard(pipelines_dir)
    token = make_token("U222")
    async with api_server(sqlite_url, pipelines_dir) as api:
        reply = await api.call(
            "GET", PIPELINES, user=None, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status == 200
        assert token not in reply.text
        assert SECRET not in reply.text


async def test_api_without_secret_refuses_everything(sqlite_url: str, pipelines_dir: Path) -> None:
    write_standard(pipelines_dir)
    settings = make_settings(sqlite_url, pipelines_dir)
    import aiohttp

    async with serving(settings) as server, aiohttp.ClientSession() as http:
        for method, path in [
            ("GET", PIPELINES),
            ("POST", "/api/v1/cicd/executions/"),
            ("GET", "/api/v1/cicd/executions/1/"),
        ]:
            async with http.request(
                method,
                server.url + path,
                headers={"Authorization": f"Bearer {make_token('U1')}"},
                json={"pipeline": "simple"},
            ) as resp:
                assert resp.status == 401
                body = await resp.json()
                assert body["error"] == "api_disabled"
                assert "ANSFLOW_JWT_SECRET" in body["detail"]


def test_token_round_trip_and_expiry() -> None:
    token = create_token(SECRET, "U123", 60)
    assert user_of(token, SECRET) == "U123"
    with pytest.raises(TokenError, match="expired"):
        user_of(create_token(SECRET, "U123", 60, now=0), SECRET)
    with pytest.raises(TokenError, match="signature"):
        user_of(token, "another-secret-that-is-long-enough-too")
    with pytest.raises(TokenError):
        create_token(SECRET, "bad user", 60)


def test_a_verified_token_is_refused_once_it_expires_and_others_are_checked_anew() -> None:
    verified = VerifiedTokens(SECRET, size=2)
    short = create_token(SECRET, "U1", 1)
    assert verified.user_of(short) == "U1"
    assert verified.user_of(short) == "U1"  # from what was verified
    # Another secret's token, or the same token altered, is checked, not looked up.
    with pytest.raises(TokenError, match="signature"):
        verified.user_of(create_token("another-secret-that-is-long-enough-too", "U1", 60))
    with pytest.raises(TokenError):
        verified.user_of(short[:-2] + ("AA" if not short.endswith("AA") else "BB"))
    # Older entries are forgotten past the bound and verified again.
    for user in ("U2", "U3", "U4"):
        assert verified.user_of(create_token(SECRET, user, 60)) == user
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and time.time() < jwt_exp(short):
        time.sleep(0.05)
    with pytest.raises(TokenError, match="expired"):
        verified.user_of(short)


def jwt_exp(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_ttl_formats(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "0s", "-1h", "1w", "1.5h", "400d"])
def test_bad_ttl_is_refused(text: str) -> None:
    with pytest.raises(TtlError):
        parse_ttl(text)


def test_token_create_prints_only_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANSFLOW_JWT_SECRET", SECRET)
    assert cmd_token_create(argparse.Namespace(user="U123", ttl="15m")) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert user_of(out.strip(), SECRET) == "U123"


def test_token_create_without_secret_or_with_bad_ttl_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANSFLOW_JWT_SECRET", raising=False)
    assert cmd_token_create(argparse.Namespace(user="U123", ttl="1h")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "ANSFLOW_JWT_SECRET" in captured.err
    monkeypatch.setenv("ANSFLOW_JWT_SECRET", SECRET)
    assert cmd_token_create(argparse.Namespace(user="U123", ttl="ten minutes")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--ttl" in captured.err


def test_ansflow_token_create_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "ANSFLOW_JWT_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "ansflow.cli", "token", "create", "--user", "U777", "--ttl", "30s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert user_of(done.stdout.strip(), SECRET) == "U777"
    env.pop("ANSFLOW_JWT_SECRET")
    done = subprocess.run(
        [sys.executable, "-m", "ansflow.cli", "token", "create", "--user", "U777"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert "ANSFLOW_JWT_SECRET" in done.stderr
