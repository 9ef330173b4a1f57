"""The Rerun button: the same pipeline and parameters again, started by whoever pressed it.

The new run is started through ``Engine.start_run`` under ``/ansflow run``'s
rules (the presser must be allowed to run the pipeline from that channel; the
parameters must still be valid), posts in the channel of the card, and names
the run it repeats (``Run.rerun_of``).

A double click starts one run, across replicas: the click first takes the
``slack_claim`` row ``rerun:{run}:{presser}`` (a primary key, so one insert
wins). A second press finds it taken and is refused privately while the claim
is fresh (:data:`DOUBLE_CLICK_SECONDS`) or its rerun still runs; after that it
may take the claim over by compare-and-set and rerun again.
"""

from __future__ import annotations

from datetime import timedelta

from tortoise.exceptions import IntegrityError

from bot import messages as say
from bot.actions import Click
from bot.commands.base import CommandEnv, CommandError, run_id_of
from bot.views import Message, plain
from engine.errors import RunNotFound
from engine.permissions import Actor
from engine.runner import RunRequest
from engine.state import RUN_TERMINAL, RunStatus
from storage.models import Run, SlackClaim
from storage.runs import now, read_run

DOUBLE_CLICK_SECONDS = 10.0


async def _claim(key: str) -> tuple[bool, int | None]:
    """Take ``key``; (False, its run) when a fresh or still running claim holds it."""
    stamp = now()
    try:
        await SlackClaim.create(key=key, claimed_at=stamp)
        return True, None
    except IntegrityError:
        pass
    held = await SlackClaim.filter(key=key).first()
    if held is None:
        return False, None
    fresh = stamp - held.claimed_at < timedelta(seconds=DOUBLE_CLICK_SECONDS)
    running = False
    if held.run_id is not None:
        statuses = await Run.filter(id=held.run_id).values_list("status", flat=True)
        running = bool(statuses) and RunStatus(str(statuses[0])) not in RUN_TERMINAL
    if fresh or running:
        return False, held.run_id
    won = await SlackClaim.filter(key=key, claimed_at=held.claimed_at).update(
        claimed_at=stamp, run_id=None
    )
    return bool(won), held.run_id


async def rerun_clicked(env: CommandEnv, click: Click) -> Message | None:
    run_id = run_id_of(click.value)
    original = await read_run(run_id)
    if original is None:
        raise RunNotFound(run_id)
    if RunStatus(original.status) not in RUN_TERMINAL:
        raise CommandError(say.rerun_not_finished(run_id))
    key = f"rerun:{run_id}:{click.user_id}"
    took, existing = await _claim(key)
    if not took:
        return plain(say.rerun_already(existing))
    channel = click.channel_id or original.channel_id
    try:
        started = await env.engine.start_run(
            RunRequest(
                pipeline=original.pipeline,
                parameters=dict(original.parameters),
                actor=Actor(click.user_id, channel),
                trigger_type="manual",
                source="slack",
                channel_id=channel,
                rerun_of=run_id,
            )
        )
    except BaseException:
        await SlackClaim.filter(key=key, run_id__isnull=True).delete()  # refused: free it
        raise
    await SlackClaim.filter(key=key).update(run_id=started.id)
    return None
