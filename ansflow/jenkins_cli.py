"""``ansflow jenkins sync [TOOL]``: store a tool's jobs and their parameters, print a summary."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ansflow.settings import Settings, SettingsError, load_settings
from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import JenkinsError
from engine.jenkins.sync import SyncSummary, sync_jobs
from engine.jenkins.tools import DEFAULT_TOOL, read_tool, register_tool
from storage.db import DatabaseError, close_db, open_db

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class SyncFailed(Exception):
    """One line fit to print."""


def cmd_jenkins_sync(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = getattr(args, "tool", None) or DEFAULT_TOOL
    try:
        summary = asyncio.run(sync_tool(settings, name))
    except (SyncFailed, DatabaseError) as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"synced {summary}")
    return EXIT_OK


async def sync_tool(settings: Settings, name: str) -> SyncSummary:
    """Open the database, sync the tool's jobs, close the database."""
    await open_db(settings.database_url)
    try:
        if name == DEFAULT_TOOL and settings.jenkins_url:
            token = settings.jenkins_api_token
            await register_tool(
                DEFAULT_TOOL,
                settings.jenkins_url,
                settings.jenkins_user or "",
                token.get_secret_value() if token else "",
            )
        tool = await read_tool(name)
        if tool is None:
            raise SyncFailed(f"there is no CI/CD tool named '{name}'")
        client = JenkinsClient(tool.url, tool.username, tool.token)
        try:
            return await sync_jobs(tool, client)
        except JenkinsError as exc:
            raise SyncFailed(str(exc)) from None
        finally:
            client.close()
    finally:
        await close_db()
