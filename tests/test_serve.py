"""``ansflow serve`` as a new user starts it: real console script, real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.fakes.slack import FakeSlack
from tests.helpers import eventually

ANSFLOW = str(Path(sys.executable).parent / "ansflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(cwd: Path, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "ANSFLOW_PORT": str(port),
    }


async def test_serve_on_defaults_answers_healthz_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        ANSFLOW,
        "serve",
        cwd=tmp_path,
        env=base_env(tmp_path, port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def healthy() -> int:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/healthz") as reply,
                ):
                    return reply.status
            except aiohttp.ClientError:
                return 0

        assert await eventually(healthy, lambda s: s == 200, timeout=30) == 200
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    slack_lines = [line for line in text.splitlines() if "Slack is off" in line]
    assert len(slack_lines) == 1
    assert "SLACK_BOT_TOKEN" in slack_lines[0] and "SLACK_SIGNING_SECRET" in slack_lines[0]
    folder_lines = [line for line in text.splitlines() if "pipelines folder" in line]
    assert len(folder_lines) == 1, text
    assert (
        f"pipelines folder pipelines (that is {tmp_path / 'pipelines'}) does not exist"
        in (folder_lines[0])
    )
    assert "ANSFLOW_PIPELINES_DIR" in folder_lines[0]
    assert (tmp_path / "ansflow.db").exists()


async def test_a_refused_slack_token_stops_the_start_with_one_line(tmp_path: Path) -> None:
    async with FakeSlack() as fake:
        env = base_env(tmp_path, free_port())
        env.update(
            SLACK_BOT_TOKEN="xoxb-wrong-token-value",
            SLACK_SIGNING_SECRET="signing-secret-value",
            SLACK_API_URL=fake.url,
        )
        process = await asyncio.create_subprocess_exec(
            ANSFLOW,
            "serve",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("ansflow: invalid setting SLACK_BOT_TOKEN")
    assert "xoxb-wrong-token-value" not in err.decode()


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            ANSFLOW,
            "serve",
            cwd=tmp_path,
            env=base_env(tmp_path, port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert (
        err.decode()
        .strip()
        .splitlines()[-1]
        .startswith(f"ansflow: cannot listen on 127.0.0.1:{port}")
    )
