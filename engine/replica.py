"""What the engine knows of the replica it runs in, and how it signals the others.

ARCHITECTURE.md decision 9. Every piece of work in flight names its owner (a
replica id); a replica that stopped renewing its lease is dead and its work
is adopted by a live one with a compare-and-set on the owner. ``alive`` is the
last set read from the database (the sweep refreshes it); a decision that
must not act on a stale view (routing a cancel) reads it again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from storage.leases import live_replica_ids


def new_replica_id() -> str:
    host = socket.gethostname()[:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Signals(Protocol):
    """Tells other replicas things; a no-op where there is only one process."""

    async def cancel(self, owner: str, run_id: int) -> None: ...

    async def event(self, run_id: int, event_type: str, step_id: int | None) -> None: ...


class NoSignals:
    async def cancel(self, owner: str, run_id: int) -> None:
        return None

    async def event(self, run_id: int, event_type: str, step_id: int | None) -> None:
        return None


@dataclass
class ReplicaRef:
    id: str = field(default_factory=new_replica_id)
    lease_seconds: float = 15.0
    # ``serve`` adopts dead replicas' work; ``ansflow run`` only runs its own.
    adopts: bool = True
    draining: bool = False
    alive: frozenset[str] = frozenset()
    # When the database last began answering this replica without a gap (monotonic).
    connected_since: float | None = None
    signals: Signals = field(default_factory=NoSignals)

    def is_mine(self, owner: str | None) -> bool:
        return owner == self.id

    async def owner_alive(self, owner: str | None) -> bool:
        """Is ``owner`` a live replica other than this one (read now, not cached)?"""
        if owner is None or owner == self.id:
            return False
        self.alive = frozenset(await live_replica_ids()) | {self.id}
        return owner in self.alive

    def settled(self) -> bool:
        """Connected long enough that a missing renewal means death, not our outage."""
        return (
            self.connected_since is not None
            and time.monotonic() - self.connected_since >= self.lease_seconds
        )
