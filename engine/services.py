"""What the Slack bot and the REST API use of the engine, handed to them by ``ansflow``.

The composition root (``ansflow/wiring.py``) builds these; ``bot/`` and
``api/`` receive them and never import the composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.events import EventBus
from engine.executors.shell import ShellExecutor
from engine.masking import Masker
from engine.replica import ReplicaRef
from engine.runner import Engine
from engine.signals import PgSignals
from storage.models import StepRun

# A Jenkins step's whole console, read from Jenkins and masked (None: not to be had).
JenkinsConsole = Callable[[StepRun], Awaitable[str | None]]


@dataclass
class Services:
    bus: EventBus
    engine: Engine
    masker: Masker
    shell: ShellExecutor
    replica: ReplicaRef
    signals: PgSignals | None = None
    jenkins_console: JenkinsConsole | None = None
