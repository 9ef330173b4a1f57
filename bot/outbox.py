"""Writing the Slack messages a state change causes, in the change's transaction.

ARCHITECTURE.md decision 4: an in-transaction subscriber of the engine's bus
stores one ``OutboxMessage`` row per message; ``bot/notifier.py`` sends them.
Row kinds:

* ``root_post``   the run card, posted once (coalesce key ``root:{run}``);
* ``root_update`` the run card again, ``chat.update`` of the root (same key);
* ``reply``       a thread reply (step start ``step:{step}``, step end,
                  the completion with ``reply_broadcast``);
* ``file``        the whole log of a failed step, uploaded into the thread.

Coalescing happens here: a change to the card rewrites the payload of a card
row nobody has tried to send yet (``attempts = 0``) instead of adding one, and
a step's end rewrites its start reply when that is still unsent. A change
violates this module when it rewrites a row with ``attempts > 0``: that row
may be on its way to Slack, and only its own outcome may settle it.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Length

from bot import messages as say
from bot import views
from engine.events import (
    CancelRequested,
    Event,
    RunFinished,
    RunSnapshot,
    RunStarted,
    StepFinished,
    StepLog,
    StepSnapshot,
    StepStarted,
    StepUpdated,
)
from engine.state import RUN_TERMINAL, StepStatus
from storage.models import OutboxMessage, Run, StepRun
from storage.runs import now

ROOT_POST = "root_post"
ROOT_UPDATE = "root_update"
REPLY = "reply"
FILE = "file"
# chat.update of an earlier reply, found by its coalesce key (payload["target_key"]).
REPLY_UPDATE = "reply_update"
POST_KINDS = frozenset({ROOT_POST, REPLY})


def root_key(run_id: int) -> str:
    return f"root:{run_id}"


def step_key(step_id: int) -> str:
    return f"step:{step_id}"


async def write_outbox(event: Event, conn: BaseDBAsyncClient) -> None:
    """The in-transaction subscriber: every Slack message ``event`` causes, as rows."""
    run = event.run
    if not run.channel_id or isinstance(event, StepLog):
        return  # a step's output lines are for the logs route and the WebSocket only
    await _root(
        run,
        conn,
        cancelling_by=event.by if isinstance(event, CancelRequested) else None,
        first=isinstance(event, RunStarted),
    )
    step = getattr(event, "step", None)
    if isinstance(event, StepStarted) and step is not None:
        await add_reply(conn, run, views.step_reply(run, step), key=step_key(step.id), step=step)
    elif isinstance(event, StepFinished) and step is not None:
        await _step_finished(run, step, conn)
    elif isinstance(event, StepUpdated) and step is not None and step.external_url:
        await add_reply(
            conn, run, views.step_reply(run, step), key=step_key(step.id), step=step, coalesce=True
        )
    elif isinstance(event, RunFinished):
        await add_reply(conn, run, views.completion(run), broadcast=True)


async def add_reply(
    conn: BaseDBAsyncClient,
    run: RunSnapshot,
    message: views.Message,
    *,
    key: str | None = None,
    step: StepSnapshot | None = None,
    broadcast: bool = False,
    coalesce: bool = False,
) -> None:
    """Queue a thread reply; with ``coalesce``, change the reply of ``key`` instead.

    An unsent reply is rewritten; one already sent (or on its way) is edited in
    place by a ``reply_update`` row, so a step keeps one message in the thread
    from its start to its end. Other parts (approvals) use this for their replies.
    """
    payload: dict[str, Any] = {**message.as_args(), "reply_broadcast": broadcast}
    if coalesce and key is not None:
        if await _rewrite(conn, key, payload):
            return
        if await _edit_posted(conn, run, key, payload, step):
            return
    await OutboxMessage.create(
        channel=run.channel_id,
        kind=REPLY,
        run_id=run.id,
        step_id=step.id if step else None,
        coalesce_key=key,
        payload=payload,
        using_db=conn,
    )


async def rewrite_unsent(conn: BaseDBAsyncClient, key: str, payload: dict[str, Any]) -> bool:
    """Replace the payload of ``key``'s row if nobody has tried to send it yet."""
    return await _rewrite(conn, key, payload)


async def _edit_posted(
    conn: BaseDBAsyncClient,
    run: RunSnapshot,
    key: str,
    payload: dict[str, Any],
    step: StepSnapshot | None,
) -> bool:
    """Queue a ``chat.update`` of ``key``'s reply when that reply exists and is not dead."""
    exists = (
        await OutboxMessage.filter(coalesce_key=key, kind=REPLY)
        .exclude(state="dead")
        .using_db(conn)
        .exists()
    )
    if not exists:
        return False
    update = {**payload, "target_key": key}
    update_key = f"{key}:update"
    if await _rewrite(conn, update_key, update):
        return True
    await OutboxMessage.create(
        channel=run.channel_id,
        kind=REPLY_UPDATE,
        run_id=run.id,
        step_id=step.id if step else None,
        coalesce_key=update_key,
        payload=update,
        using_db=conn,
    )
    return True


async def _rewrite(conn: BaseDBAsyncClient, key: str, payload: dict[str, Any]) -> bool:
    count = await (
        OutboxMessage.filter(coalesce_key=key, state="pending", attempts=0)
        .using_db(conn)
        .update(payload=payload)
    )
    return bool(count)


async def _root(
    run: RunSnapshot, conn: BaseDBAsyncClient, *, cancelling_by: str | None, first: bool
) -> None:
    rows = await Run.filter(id=run.id).using_db(conn).values_list("cancel_requested_by", "rerun_of")
    stored_by, rerun_of = rows[0] if rows else (None, None)
    if cancelling_by is None and run.status not in RUN_TERMINAL and stored_by:
        cancelling_by = str(stored_by)
    repeats = int(rerun_of) if rerun_of is not None else None
    payload = views.run_card(run, now(), cancelling_by, repeats).as_args()
    key = root_key(run.id)
    if await _rewrite(conn, key, payload):
        return
    exists = not first and await OutboxMessage.filter(coalesce_key=key).using_db(conn).exists()
    await OutboxMessage.create(
        channel=run.channel_id,
        kind=ROOT_UPDATE if exists else ROOT_POST,
        run_id=run.id,
        coalesce_key=key,
        payload=payload,
        using_db=conn,
    )


async def _step_finished(run: RunSnapshot, step: StepSnapshot, conn: BaseDBAsyncClient) -> None:
    if step.status == StepStatus.SKIPPED:
        return
    attach = step.status == StepStatus.FAILED and await _log_is_longer(step, conn)
    message = views.step_reply(run, step, attached=attach)
    await add_reply(conn, run, message, key=step_key(step.id), step=step, coalesce=True)
    if attach:
        filename = f"{run.pipeline}-{run.id}-{_slug(step.name)}.log"
        payload = {
            "step_id": step.id,
            "filename": filename,
            "title": say.log_file_title(run.pipeline, run.id, step.name),
        }
        await OutboxMessage.create(
            channel=run.channel_id,
            kind=FILE,
            run_id=run.id,
            step_id=step.id,
            payload=payload,
            using_db=conn,
        )


async def _log_is_longer(step: StepSnapshot, conn: BaseDBAsyncClient) -> bool:
    """True when the stored log holds more than the tail the reply shows."""
    rows = await (
        StepRun.filter(id=step.id)
        .using_db(conn)
        .annotate(size=Length("log"))
        .values_list("size", "log_dropped")
    )
    if not rows:
        return False
    size, dropped = rows[0]
    return bool(dropped) or int(size or 0) > len(step.log_tail.rstrip("\n")) + 1


def _slug(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
    return kept.strip("-") or "step"
