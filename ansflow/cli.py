"""The ``ansflow`` command: run, serve, validate, schema, db, token, manifest, jenkins.

Start-up time matters here (a person waits for ``--help``): this module
imports only the standard library, and each command imports what it needs
when it runs (``--help`` and ``token`` load no engine, database or HTTP
library; ``validate`` and ``schema`` only the pipeline loader).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ansflow.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _settings_or_exit() -> Settings:
    from ansflow.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _configure_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("tortoise", "aiosqlite", "asyncio", "apscheduler", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ansflow.cli_run import run_in_terminal

    settings = _settings_or_exit()
    if args.pipelines:
        settings = settings.model_copy(update={"pipelines_dir": Path(args.pipelines)})
    return run_in_terminal(settings, args.pipeline, args.params)


def cmd_serve(args: argparse.Namespace) -> int:
    from ansflow.serve import serve

    _configure_logging(args.verbose)
    settings = _settings_or_exit()
    if not settings.pipelines_dir.is_dir():
        import logging

        from engine.pipelines.messages import missing_folder

        logging.getLogger("ansflow.serve").warning(missing_folder(settings.pipelines_dir))
    return serve(settings)


def cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.pipelines import load_catalog

    folder = Path(args.dir) if args.dir else _settings_or_exit().pipelines_dir
    catalog = load_catalog(folder)
    for problem in catalog.problems:
        print(f"error: {problem}", file=sys.stderr)
    for name, path in sorted(catalog.sources.items()):
        print(f"ok: {path} ({name})")
    if not catalog.pipelines and not catalog.problems:
        print(f"no pipeline files (*.yml, *.yaml) in {folder}", file=sys.stderr)
    return EXIT_FAILED if catalog.problems else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from engine.pipelines import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    import asyncio

    from storage.db import DatabaseError, migrate, redact

    settings = _settings_or_exit()
    try:
        asyncio.run(migrate(settings.database_url))
    except DatabaseError as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"database is up to date: {redact(settings.database_url)}")
    return EXIT_OK


def _optional(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), function
        )
        return handler(args)

    return call


def skip_pydantic_plugins() -> None:
    """Tell pydantic, by its documented switch, that no pydantic plugin is wanted.

    Otherwise it reads the entry points of every installed distribution when it
    builds its first model (some 10 ms a start); ansflow uses no plugin. A value
    already in the environment wins. Steps never see it: their environment is
    built from scratch (``engine.stepenv``).
    """
    import os

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def load_modules(modules: tuple[str, ...]) -> None:
    """Import a command's modules with the cyclic garbage collector paused.

    Loading them allocates some 70,000 long-lived objects and almost no garbage
    (a few hundred objects in cycles); collections meanwhile would walk them
    again and again. Once loaded they are frozen (never walked again) and the
    collector resumes for the command's own work.
    """
    import gc
    import importlib

    if not modules:
        return
    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ansflow",
        description="Run delivery pipelines from Slack, the terminal and a REST API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline in the terminal with live progress")
    run.add_argument("pipeline", help="pipeline name")
    run.add_argument("params", nargs="*", metavar="key=value", help="parameters")
    run.add_argument("--pipelines", metavar="DIR", help="folder of pipeline files")
    run.set_defaults(handler=cmd_run, modules=("ansflow.cli_run",), no_pydantic_plugins=True)

    serve = sub.add_parser("serve", help="serve Slack, the REST API and the engine")
    serve.add_argument("-v", "--verbose", action="store_true")
    serve.set_defaults(handler=cmd_serve, modules=("ansflow.serve",))

    validate = sub.add_parser("validate", help="check pipeline files; non-zero exit on errors")
    validate.add_argument("dir", nargs="?", help="folder (default: ANSFLOW_PIPELINES_DIR)")
    validate.set_defaults(
        handler=cmd_validate, modules=("engine.pipelines",), no_pydantic_plugins=True
    )

    schema = sub.add_parser("schema", help="print the JSON Schema of pipeline files")
    schema.set_defaults(handler=cmd_schema, modules=("engine.pipelines",), no_pydantic_plugins=True)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)

    token = sub.add_parser("token", help="REST API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="print a bearer token")
    create.add_argument("--user", required=True, help="Slack user id the token acts as")
    create.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    create.set_defaults(handler=_optional("ansflow.token_cli", "cmd_token_create"))

    manifest = sub.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--url", help="public base URL, e.g. https://ansflow.example.com")
    manifest.add_argument("--socket-mode", action="store_true", help="Socket Mode variant")
    manifest.set_defaults(handler=_optional("bot.manifest", "cmd_manifest"))

    jenkins = sub.add_parser("jenkins", help="Jenkins tools")
    jenkins_sub = jenkins.add_subparsers(dest="jenkins_command", required=True, metavar="ACTION")
    sync = jenkins_sub.add_parser("sync", help="store jobs and their parameters")
    sync.add_argument("tool", nargs="?", default="jenkins")
    sync.set_defaults(handler=_optional("ansflow.jenkins_cli", "cmd_jenkins_sync"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_pydantic_plugins", False):
        skip_pydantic_plugins()
    try:
        load_modules(getattr(args, "modules", ()))
        code: int = args.handler(args)
    except KeyboardInterrupt:
        # Ctrl-C before a command could take it over (e.g. while starting): nothing
        # was started, so there is nothing to cancel; no traceback.
        print("ansflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
