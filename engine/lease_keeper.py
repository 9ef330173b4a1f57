"""Keeping this replica's lease, sweeping for dead replicas' work, handing over on stop.

Every ``lease_seconds / 3`` the keeper renews the lease on the database's
clock, writes outcomes kept during an outage, and sweeps (``engine.takeover``).
On a database outage it keeps trying (bounded backoff); once back it renews
first, so the others never see it dead for a short outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from engine.runner import Engine
from engine.takeover import sweep
from storage.leases import forget_dead_replicas, register_replica, renew_replica, retire_replica
from storage.outage import is_database_outage

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.2
FORGET_AFTER = 7 * 24 * 3600.0
TICK_GRACE = 5.0  # seconds a sweep under way is given when the replica stops


class LeaseKeeper:
    def __init__(self, engine: Engine, *, port: int | None, exclusive: bool) -> None:
        self.engine = engine
        self.replica = engine.replica
        self.port = port
        # SQLite serves one process: any other replica row is a dead earlier one.
        self.exclusive = exclusive
        self.interval = max(MIN_INTERVAL, self.replica.lease_seconds / 3)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ticking = False
        self._renewed_at: float | None = None  # monotonic time of the last renewal
        self.sweeps = 0

    async def start(self) -> None:
        """Register, then adopt what dead replicas left (start-up recovery)."""
        await register_replica(
            self.replica.id,
            socket.gethostname(),
            os.getpid(),
            self.port,
            self.replica.lease_seconds,
            exclusive=self.exclusive,
        )
        # Freshly registered: dead owners are dead, not late (no outage of ours).
        self._renewed_at = time.monotonic()
        self.replica.connected_since = self._renewed_at - self.replica.lease_seconds
        recovered = await sweep(self.engine)
        if recovered:
            log.info("took over %s unfinished item(s) of stopped replicas", recovered)
        self._task = asyncio.create_task(self._loop(), name="replica-lease")

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            # Retrying after a failure never waits longer than a renewal would: a
            # replica back from an outage must renew (and store the outcomes it
            # kept) before the others, who wait one lease, may adopt its work.
            await asyncio.sleep(
                self.interval if failures == 0 else min(self.interval, 0.5 * failures)
            )
            if self._stopping:
                return
            try:
                self._ticking = True
                await self.tick()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = min(failures + 1, 10)
                if is_database_outage(exc):
                    if self.replica.connected_since is not None:
                        log.warning("database unreachable: %s; keeping work in memory", exc)
                    self.replica.connected_since = None
                else:
                    log.exception("replica lease: sweep failed")
            finally:
                self._ticking = False

    async def tick(self) -> None:
        renewed = await renew_replica(
            self.replica.id, self.replica.lease_seconds, draining=self.replica.draining
        )
        if not renewed:
            log.warning("this replica's lease row was gone; registering again")
            await register_replica(
                self.replica.id,
                socket.gethostname(),
                os.getpid(),
                self.port,
                self.replica.lease_seconds,
                exclusive=False,
            )
        now = time.monotonic()
        stalled = (
            self._renewed_at is not None and now - self._renewed_at > self.replica.lease_seconds
        )
        self._renewed_at = now
        if self.replica.connected_since is None or stalled:
            # Back after an outage, or after renewals that hung for longer than a
            # lease: the owners that look dead may only be late too. Wait a lease.
            log.info("database reachable again")
            self.replica.connected_since = now
        if len(self.engine.outcomes):
            written = await self.engine.write_pending_outcomes()
            log.info("stored %s step outcome(s) kept during the outage", written)
        await sweep(self.engine)
        self.sweeps += 1
        if self.sweeps % 1000 == 1:
            await forget_dead_replicas_safely()

    async def drain(self) -> None:
        """Take no new work: no adoption, no new steps started here."""
        self.replica.draining = True
        with contextlib.suppress(Exception):
            await renew_replica(self.replica.id, self.replica.lease_seconds, draining=True)

    async def stop(self) -> None:
        """Stop renewing and hand everything over: our lease ends now."""
        self._stopping = True
        if self._task is not None:
            if self._ticking:
                # Let a sweep under way end (bounded): cancelled while it opens a
                # transaction, it would leave SQLite's lock held.
                await asyncio.wait({self._task}, timeout=TICK_GRACE)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await retire_replica(self.replica.id)
        except Exception as exc:
            log.warning("could not release this replica's lease (%s); it expires by itself", exc)


async def forget_dead_replicas_safely() -> None:
    from datetime import timedelta

    try:
        await forget_dead_replicas(timedelta(seconds=FORGET_AFTER))
    except Exception:
        log.exception("could not forget long-dead replicas")
