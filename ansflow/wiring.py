"""Building the engine and its executors from settings (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ansflow.settings import Settings
from engine.catalog import PipelineSource
from engine.events import EventBus
from engine.executors.approval import ApprovalExecutor
from engine.executors.shell import ShellExecutor
from engine.lease_keeper import LeaseKeeper
from engine.masking import Masker
from engine.replica import ReplicaRef
from engine.runner import Engine
from engine.services import Services
from engine.signals import PgSignals
from engine.workspaces import Workspaces


@dataclass
class Core:
    settings: Settings
    bus: EventBus
    engine: Engine
    masker: Masker
    shell: ShellExecutor
    approvals: ApprovalExecutor
    replica: ReplicaRef
    keeper: LeaseKeeper
    signals: PgSignals | None
    workspaces: Workspaces
    # What bot/ and api/ are handed (they never import this module).
    services: Services

    async def start(self) -> None:
        """Register this replica and take over what dead replicas left."""
        if self.signals is not None:
            self.replica.signals = self.signals
            self.signals.on_cancel = self.engine.drive
            self.bus.subscribe_in_tx_batch(self.signals.on_local_events)
            self.signals.start()
            await self.signals.wait_listening(timeout=5.0)
        await self.keeper.start()
        self.workspaces.start()

    async def drain(self, seconds: float) -> None:
        """Take no new work; let running local steps end for at most ``seconds``."""
        await self.keeper.drain()
        await self.shell.wait_idle(seconds)

    async def stop(self) -> None:
        """Stop local work (processes, timers), then hand the rest over (lease ends)."""
        await self.approvals.shutdown()
        await self.shell.shutdown()
        await self.workspaces.close()
        await self.engine.close()
        await self.keeper.stop()
        if self.signals is not None:
            await self.signals.stop()


def build_core(
    settings: Settings,
    workdir: Path | None = None,
    *,
    port: int | None = None,
    adopts: bool | None = None,
) -> Core:
    """``port``: where this process listens (``serve``); None for the terminal.
    ``workdir``: the service's working directory, against which a relative
    ``ANSFLOW_WORKSPACES_DIR`` is resolved (default: the process's own).

    ``adopts``: take over dead replicas' work (default: when serving).
    """
    bus = EventBus()
    secrets = settings.secret_values()
    masker = Masker(secrets)
    replica = ReplicaRef(
        lease_seconds=settings.lease_seconds, adopts=port is not None if adopts is None else adopts
    )
    engine = Engine(
        source=PipelineSource(settings.pipelines_dir),
        bus=bus,
        admins=settings.admins,
        replica=replica,
    )
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
    # SQLite serves one process: a starting server is the only one.
    keeper = LeaseKeeper(engine, port=port, exclusive=port is not None and not settings.on_postgres)
    signals = PgSignals(settings.database_url, replica) if settings.on_postgres else None
    return Core(
        settings=settings,
        bus=bus,
        engine=engine,
        masker=masker,
        shell=shell,
        approvals=approvals,
        replica=replica,
        keeper=keeper,
        signals=signals,
        workspaces=workspaces,
        services=Services(
            bus=bus, engine=engine, masker=masker, shell=shell, replica=replica, signals=signals
        ),
    )
