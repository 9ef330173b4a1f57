"""The documentation in ``docs/`` keeps up with the code, and stays inside the repository.

Each list checked here is derived from the code itself (the settings model, the
pipeline JSON Schema, the aiohttp router, the CLI parser, the metrics
registry), so a new setting, key, route, command or metric that nobody
documented fails a test. Pure: nothing is started, nothing is served.
"""

from __future__ import annotations

import argparse
import inspect
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, AliasPath

from ansflow.app import build_app
from ansflow.cli import build_parser
from ansflow.metrics import Metrics
from ansflow.settings import Settings, load_settings
from bot.messages import USAGE
from engine.pipelines import json_schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIPPED_DIRS = frozenset(
    {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist"}
)
# Documents that live outside the repository; nothing in it may send a reader there.
# Spelled in pieces so that this file does not mention them itself.
OUTSIDE = ("../" + "shared", "INTERFACE" + ".md", "STYLE" + ".md", "NOTES-" + "slack-jenkins")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (links and headings there are not real)."""
    return FENCE.sub("", text)


def repo_files(*suffixes: str) -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).parts
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative[:-1]):
            continue
        if path.is_file() and path.suffix in suffixes:
            yield path


# ---- (a) settings -------------------------------------------------------------------


def field_env_names(model: type[Settings], field_name: str) -> list[str]:
    """The environment variable(s) one field of the settings model is read from."""
    field = model.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [
            c if isinstance(c, str) else str(c.path[0])
            for c in alias.choices
            if isinstance(c, str) or (isinstance(c, AliasPath) and c.path)
        ]
    if isinstance(alias, AliasPath):
        return [str(alias.path[0])]
    if isinstance(alias, str):
        return [alias]
    prefix = model.model_config.get("env_prefix", "") or ""
    return [prefix + (field.alias or field_name)]


def env_names(model: type[Settings]) -> list[str]:
    return [name for field in model.model_fields for name in field_env_names(model, field)]


def table_code_spans(text: str) -> set[str]:
    """Every `code` span in the rows of Markdown tables."""
    spans: set[str] = set()
    for line in prose(text).splitlines():
        if line.lstrip().startswith("|"):
            spans.update(CODE_SPAN.findall(line))
    return spans


def test_settings_are_read_from_the_model() -> None:
    names = env_names(Settings)
    assert len(names) >= len(Settings.model_fields)
    assert "ANSFLOW_DATABASE_URL" in names and "SLACK_BOT_TOKEN" in names


def test_every_setting_has_a_row_in_the_settings_page() -> None:
    documented = table_code_spans(read(DOCS / "settings.md"))
    missing = [name for name in env_names(Settings) if name not in documented]
    assert not missing, f"docs/settings.md has no table row for: {', '.join(missing)}"


def default_texts(value: Any) -> set[str]:
    """How a default may be written in the settings page."""
    if isinstance(value, Path):
        return {str(value), f"./{value}"}
    if isinstance(value, float) and value.is_integer():
        return {str(int(value)), str(value)}
    return {str(value)}


def test_settings_page_states_the_real_defaults() -> None:
    rows = {
        span: line
        for line in read(DOCS / "settings.md").splitlines()
        if line.startswith("| `")
        for span in CODE_SPAN.findall(line.split("|")[1])
    }
    checked = 0
    problems: list[str] = []
    for field_name, field in Settings.model_fields.items():
        env = field_env_names(Settings, field_name)[0]
        default = field.get_default(call_default_factory=True)
        if default is None or default == "" or env not in rows:
            continue  # no default to state, or no row (the test above reports that)
        checked += 1
        cells = rows[env].split("|")
        if not any(f"`{text}`" in cells[2] for text in default_texts(default)):
            problems.append(f"{env} (default {default!r}, field {field_name})")
    assert checked >= 5
    assert not problems, "docs/settings.md states another default for: " + ", ".join(problems)


# ---- (b) pipeline keys --------------------------------------------------------------


def schema_keys(node: Any) -> set[str]:
    """Every property name anywhere in a JSON Schema (``$defs``, ``anyOf``, ``items`` …)."""
    keys: set[str] = set()
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            keys.update(properties)
        for value in node.values():
            keys |= schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= schema_keys(value)
    return keys


def documented_keys(text: str) -> set[str]:
    """Names that appear as a code span, alone or as a part of a dotted path (`a.b.c`)."""
    names: set[str] = set()
    for span in CODE_SPAN.findall(prose(text)):
        names.update(part.strip(":") for part in span.split("."))
    return names


def test_schema_walk_finds_nested_keys() -> None:
    keys = schema_keys(json_schema())
    # Top level, a step kind, and a key nested two levels down (approval → approvers).
    assert {"name", "steps", "run", "approvers", "allow_self_approval", "job"} <= keys


def test_every_pipeline_key_is_in_the_pipeline_reference() -> None:
    documented = documented_keys(read(DOCS / "pipelines.md"))
    missing = sorted(schema_keys(json_schema()) - documented)
    assert not missing, f"docs/pipelines.md does not document: {', '.join(missing)}"


def test_pipeline_reference_states_the_default_timeout() -> None:
    from engine.executors import base, shell

    default = getattr(base, "DEFAULT_TIMEOUT", None) or getattr(shell, "DEFAULT_TIMEOUT", None)
    assert isinstance(default, float | int), "no DEFAULT_TIMEOUT in engine/executors"
    text = read(DOCS / "pipelines.md")
    section = text[text.index("## Timeouts") : text.index("## `${name}` substitution")]
    rows = [line for line in section.splitlines() if line.startswith(("| `run`", "| `jenkins`"))]
    assert len(rows) == 2 and all(f"{default:g} s" in row for row in rows), rows


def test_step_environment_variables_are_documented() -> None:
    from engine.stepenv import step_environment

    given: dict[str, Any] = {
        "pipeline_env": {},
        "step_env": {},
        "parameters": {},
        "run_id": 1,
        "pipeline": "p",
        "step": "s",
        "triggered_by": "U1",
        "secrets": [],
    }
    if "workspace" in inspect.signature(step_environment).parameters:
        given["workspace"] = "/tmp/ws"
    env = step_environment(**given)
    ours = {name for name in env if name.startswith("ANSFLOW_")}
    assert ours, "the step environment sets no ANSFLOW_ variable"
    missing = sorted(ours - table_code_spans(read(DOCS / "pipelines.md")))
    assert not missing, f"docs/pipelines.md has no row for: {', '.join(missing)}"


# ---- (c) nothing points outside the repository -------------------------------------


def test_scan_covers_the_sources_and_docs() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in repo_files(".md", ".py")}
    assert {"README.md", "docs/api.md", "ansflow/settings.py", "tests/test_docs.py"} <= scanned
    assert not any(p.startswith(".venv/") for p in scanned)


def test_no_file_cites_a_document_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {word}"
        for path in repo_files(".md", ".py")
        for number, line in enumerate(read(path).splitlines(), start=1)
        for word in OUTSIDE
        if word in line
    ]
    assert not found, "cites a document that is not in the repository:\n" + "\n".join(found)


# ---- (d) links ----------------------------------------------------------------------


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    for heading in HEADING.findall(prose(read(path))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_slugs_follow_github() -> None:
    assert slug("`ANSFLOW_RUN_STEP`: tell builds apart") == "ansflow_run_step-tell-builds-apart"
    assert slug("Pipelines and CI/CD tools") == "pipelines-and-cicd-tools"
    assert slug("`${name}` substitution") == "name-substitution"


def test_docs_folder_has_every_page() -> None:
    pages = {p.name for p in DOCS.glob("*.md")}
    wanted = {"README.md", "pipelines.md", "settings.md", "slack.md", "api.md", "jenkins.md"}
    assert wanted | {"operations.md"} <= pages


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_an_existing_file(page: Path) -> None:
    broken: list[str] = []
    links = LINK.findall(prose(read(page)))
    for target in links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
            continue
        file_part, _, fragment = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not destination.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"


def test_readme_links_into_every_docs_page() -> None:
    text = read(ROOT / "README.md")
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(text) if t.startswith("docs/")}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= linked, f"README.md does not link to: {', '.join(sorted(pages - linked))}"


# ---- (e) routes ---------------------------------------------------------------------

# Routes documented outside the API page, and where.
ELSEWHERE = {"/slack/events": "slack.md", "/healthz": "operations.md", "/metrics": "operations.md"}


def served_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every route of the real application, built but not started."""
    settings = load_settings(
        {
            "ANSFLOW_DATABASE_URL": f"sqlite://{tmp_path / 'docs.db'}",
            "ANSFLOW_PIPELINES_DIR": str(tmp_path),
            "SLACK_BOT_TOKEN": "xoxb-docs-test",
            "SLACK_SIGNING_SECRET": "docs-test-signing-secret",
            "ANSFLOW_JWT_SECRET": "docs-test-jwt-secret-of-32-bytes-at-least",
            "ANSFLOW_JENKINS_HOOK_SECRET": "docs-test-hook-secret",
        }
    )
    app = build_app(settings, workdir=tmp_path)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    return sorted(routes, key=lambda r: (r[1], r[0]))


def test_route_listing_sees_every_part(tmp_path: Path) -> None:
    paths = {path for _, path in served_routes(tmp_path)}
    assert {"/slack/events", "/healthz", "/api/v1/cicd/executions/", "/hooks/jenkins/{secret}"} <= (
        paths
    )


def test_every_route_is_documented(tmp_path: Path) -> None:
    api = read(DOCS / "api.md")
    missing: list[str] = []
    for method, path in served_routes(tmp_path):
        if path in ELSEWHERE:
            if path not in read(DOCS / ELSEWHERE[path]):
                missing.append(f"{path} (in docs/{ELSEWHERE[path]})")
        elif f"{method} {path}" not in api:
            missing.append(f"{method} {path} (in docs/api.md)")
    assert not missing, "undocumented routes: " + ", ".join(missing)


# ---- commands, subcommands and metrics ----------------------------------------------


def cli_commands(parser: argparse.ArgumentParser, prefix: str = "ansflow") -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}"
                yield from cli_commands(sub, f"{prefix} {name}")


def test_every_cli_command_is_in_the_cli_page() -> None:
    text = read(DOCS / "cli.md")
    commands = list(cli_commands(build_parser()))
    assert "ansflow db upgrade" in commands
    missing = [c for c in commands if c not in text]
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"


def test_every_slash_subcommand_is_in_the_slack_page() -> None:
    text = read(DOCS / "slack.md")
    missing = [name for name in USAGE if f"/ansflow {name}" not in text]
    assert not missing, f"docs/slack.md does not describe: {', '.join(missing)}"


def test_every_metric_is_in_the_operations_page() -> None:
    text = read(DOCS / "operations.md")
    names = sorted({family.name for family in Metrics().registry.collect()})
    assert names, "no metrics registered"
    missing = [name for name in names if f"`{name}" not in text]
    assert not missing, f"docs/operations.md does not list: {', '.join(missing)}"


def test_every_slack_scope_is_explained() -> None:
    from bot.manifest import BOT_SCOPES

    explained = table_code_spans(read(DOCS / "slack.md"))
    missing = [scope for scope in BOT_SCOPES if scope not in explained]
    assert not missing, f"docs/slack.md does not explain the scopes: {', '.join(missing)}"


def test_every_websocket_event_type_is_in_the_api_page() -> None:
    from engine import events

    types = sorted(set(events._EVENT_NAMES.values()))
    assert "run.finished" in types
    documented = table_code_spans(read(DOCS / "api.md"))
    missing = [name for name in types if name not in documented]
    assert not missing, f"docs/api.md does not list the event types: {', '.join(missing)}"


def test_readme_starts_with_the_two_commands() -> None:
    lines = read(ROOT / "README.md").splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2] == "```bash"
    first_block = lines[3 : lines.index("```", 3)]
    assert first_block[0].startswith("pip install . && ") and "ansflow run hello" in first_block[0]
    assert first_block[1].startswith("bash .ci/run")
