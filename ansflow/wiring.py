"""Building the engine and its executors from settings (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ansflow.settings import Settings
from engine.catalog import PipelineSource
from engine.events import EventBus
from engine.executors.approval import ApprovalExecutor
from engine.executors.shell import ShellExecutor
from engine.masking import Masker
from engine.runner import Engine
from engine.workspaces import Workspaces


@dataclass
class Core:
    settings: Settings
    bus: EventBus
    engine: Engine
    masker: Masker
    shell: ShellExecutor
    approvals: ApprovalExecutor
    workspaces: Workspaces

    def start(self) -> None:
        """Start background upkeep (the workspace sweep); needs the running loop."""
        self.workspaces.start()

    async def stop(self) -> None:
        """Stop local work (processes, timers) and the engine's own tasks."""
        await self.approvals.shutdown()
        await self.shell.shutdown()
        await self.workspaces.close()
        await self.engine.close()


def build_core(settings: Settings, workdir: Path | None = None) -> Core:
    """``workdir``: the service's working directory, against which a relative
    ``ANSFLOW_WORKSPACES_DIR`` is resolved (default: the process's own)."""
    bus = EventBus()
    secrets = settings.secret_values()
    masker = Masker(secrets)
    engine = Engine(source=PipelineSource(settings.pipelines_dir), bus=bus, admins=settings.admins)
    root = settings.workspaces_dir
    if workdir is not None and not root.is_absolute():
        root = workdir / root
    workspaces = Workspaces(root, settings.workspaces_keep)
    shell = ShellExecutor(masker, secrets, workspaces=workspaces, bus=bus)
    workspaces.busy = shell.busy_runs
    bus.subscribe(workspaces.on_event)
    engine.register(shell, idle=shell.idle)
    approvals = ApprovalExecutor(bus)
    engine.register(approvals)
    return Core(
        settings=settings,
        bus=bus,
        engine=engine,
        masker=masker,
        shell=shell,
        approvals=approvals,
        workspaces=workspaces,
    )
