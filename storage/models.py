"""Tortoise models (ARCHITECTURE.md "Data").

Statuses are written only through the compare-and-set functions in
``storage/runs.py``; a change violates this when it assigns ``status`` on a
model instance and calls ``save()``.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

# Each model sets ``_no_comments``: Tortoise would otherwise read this file's
# source (inspect.getsource, one parse per class) at import to find ``#:``
# field comments, which these models do not use; it costs every start.


class CICDTool(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    kind = fields.CharField(max_length=32, default="jenkins")
    url = fields.CharField(max_length=512)
    username = fields.CharField(max_length=128, default="")
    # Never logged, posted or returned by the API.
    token = fields.CharField(max_length=512, default="")
    status = fields.CharField(max_length=16, default="active")
    last_health_at = fields.DatetimeField(null=True)
    last_health_ok = fields.BooleanField(null=True)
    last_health_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "cicd_tool"


class Run(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    pipeline = fields.CharField(max_length=80, db_index=True)
    definition: fields.JSONField[Any] = fields.JSONField()
    parameters: fields.JSONField[Any] = fields.JSONField()
    status = fields.CharField(max_length=24, db_index=True, default="pending")
    trigger_type = fields.CharField(max_length=16, default="manual")
    triggered_by = fields.CharField(max_length=64, default="")
    source = fields.CharField(max_length=16, default="cli")
    cicd_tool_id = fields.IntField(null=True)
    channel_id = fields.CharField(max_length=32, null=True)
    thread_ts = fields.CharField(max_length=32, null=True)
    reason = fields.TextField(null=True)
    failed_step = fields.CharField(max_length=80, null=True)
    cancel_requested_by = fields.CharField(max_length=64, null=True)
    cancel_requested_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    # The replica that drives the run when nothing else moves it (None: adoptable).
    owner = fields.CharField(max_length=96, null=True, db_index=True)
    # ---- triggers and concurrency groups (issue 12) ----
    # The run's concurrency group (its ``${param}`` filled in), set when it queues.
    concurrency_group = fields.CharField(max_length=200, null=True, db_index=True)
    # While ``queued``: the run it waits behind.
    queued_behind = fields.IntField(null=True)
    # Slack (issue 11): the run this one repeats (the Rerun button).
    rerun_of = fields.IntField(null=True)
    # Bumped by every UPDATE of the row (our statements bump it themselves, a trigger
    # of migration 0008 for every other writer): a round planned from a kept run row
    # checks it is still this (``storage.round_writes``).
    version = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "run"


class StepRun(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="steps", on_delete=fields.CASCADE
    )
    run_id: int
    path = fields.CharField(max_length=16)
    position = fields.IntField()
    name = fields.CharField(max_length=80)
    kind = fields.CharField(max_length=16)
    status = fields.CharField(max_length=24, default="pending")
    exit_code = fields.IntField(null=True)
    reason = fields.TextField(null=True)
    log = fields.TextField(default="")
    log_tail = fields.TextField(default="")
    log_dropped = fields.BigIntField(default=0)
    external_id = fields.CharField(max_length=256, null=True)
    external_url = fields.CharField(max_length=1024, null=True)
    external_state: fields.JSONField[Any] = fields.JSONField(null=True)
    attempt = fields.IntField(default=0)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    # The replica whose process, timer or trigger does this step's work.
    owner = fields.CharField(max_length=96, null=True, db_index=True)
    # Bumped by every UPDATE of the row, whoever writes it (a trigger of migration
    # 0007 sees to writers that do not bump it themselves): a reader that kept the
    # row re-reads it only when this differs (``storage.runs.read_run_and_steps``).
    version = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "step_run"
        unique_together = (("run", "path"),)


class Approval(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    step: fields.OneToOneRelation[StepRun] = fields.OneToOneField(
        "models.StepRun", related_name="approval", on_delete=fields.CASCADE
    )
    step_id: int
    run_id = fields.IntField(db_index=True)
    approvers: fields.JSONField[Any] = fields.JSONField()
    required = fields.IntField(default=1)
    allow_self_approval = fields.BooleanField(default=False)
    requested_by = fields.CharField(max_length=64, default="")
    expires_at = fields.DatetimeField(null=True)
    outcome = fields.CharField(max_length=16, null=True)
    decided_at = fields.DatetimeField(null=True)
    message_ts = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "approval"


class ApprovalDecision(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    approval: fields.ForeignKeyRelation[Approval] = fields.ForeignKeyField(
        "models.Approval", related_name="decisions", on_delete=fields.CASCADE
    )
    approval_id: int
    user_id = fields.CharField(max_length=64)
    decision = fields.CharField(max_length=16)
    comment = fields.TextField(null=True)
    decided_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "approval_decision"
        unique_together = (("approval", "user_id"),)


class OutboxMessage(Model):
    _no_comments = True
    """A Slack message a state change caused, stored in the change's transaction."""

    id = fields.IntField(primary_key=True)
    channel = fields.CharField(max_length=32, db_index=True)
    kind = fields.CharField(max_length=32)
    run_id = fields.IntField(null=True, db_index=True)
    step_id = fields.IntField(null=True)
    # Rows sharing a coalesce key (e.g. the root card of one run) collapse to the latest.
    coalesce_key = fields.CharField(max_length=64, null=True, db_index=True)
    payload: fields.JSONField[Any] = fields.JSONField()
    state = fields.CharField(max_length=16, default="pending", db_index=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    result_ts = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"


class JenkinsJob(Model):
    _no_comments = True
    id = fields.IntField(primary_key=True)
    tool: fields.ForeignKeyRelation[CICDTool] = fields.ForeignKeyField(
        "models.CICDTool", related_name="jobs", on_delete=fields.CASCADE
    )
    tool_id: int
    full_name = fields.CharField(max_length=512)
    url = fields.CharField(max_length=1024)
    buildable = fields.BooleanField(default=True)
    parameters: fields.JSONField[Any] = fields.JSONField(default=list)
    synced_at = fields.DatetimeField()

    class Meta:
        table = "jenkins_job"
        unique_together = (("tool", "full_name"),)


class SeenEvent(Model):
    _no_comments = True
    """Slack Events API deliveries already handled (Slack retries them)."""

    event_id = fields.CharField(max_length=64, primary_key=True)
    seen_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "seen_event"


# ---- several replicas (ARCHITECTURE.md decision 9) ---------------------------------


class Replica(Model):
    """One ``ansflow serve`` (or ``ansflow run``) process, alive while its lease is renewed."""

    _no_comments = True

    id = fields.CharField(max_length=96, primary_key=True)
    host = fields.CharField(max_length=255)
    pid = fields.IntField()
    port = fields.IntField(null=True)
    started_at = fields.DatetimeField()
    # Renewed on the database's clock; past it the replica is dead.
    lease_until = fields.DatetimeField(db_index=True)
    draining = fields.BooleanField(default=False)

    class Meta:
        table = "replica"


class Lease(Model):
    """A named piece of service-wide work held by one replica at a time.

    ``outbox:{channel}`` paces one Slack channel, ``poller:{tool}`` polls one CI
    tool. Taken with a compare-and-set on ``owner``/``expires_at``.
    """

    _no_comments = True

    name = fields.CharField(max_length=128, primary_key=True)
    owner = fields.CharField(max_length=96)
    expires_at = fields.DatetimeField()
    # A rate held with the lease (Slack's per-channel pace): what is left, and when.
    tokens = fields.FloatField(null=True)
    tokens_at = fields.DatetimeField(null=True)

    class Meta:
        table = "lease"


# ---- Idempotency-Key of REST creates (api helper; migration 0006) ----------------
class IdempotencyKey(Model):
    """A create request's ``Idempotency-Key``: inserted in the run's own transaction.

    Unique per (token subject, key): a second request with the same key finds
    this row (or waits for it on the unique index) and gets the same run.
    """

    _no_comments = True

    id = fields.IntField(primary_key=True)
    subject = fields.CharField(max_length=64)
    key = fields.CharField(max_length=255)
    # SHA-256 of the request body in canonical JSON: a reused key with another body is refused.
    fingerprint = fields.CharField(max_length=64)
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="idempotency_keys", on_delete=fields.CASCADE
    )
    run_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "idempotency_key"
        unique_together = (("subject", "key"),)


# ---- triggers and concurrency groups (issue 12) ---------------------------------


class ScheduleFire(Model):
    """One fire of a pipeline's schedule, claimed before its run starts.

    Unique per (pipeline, schedule key, fire time): the replica whose insert
    wins starts the run; the others get an IntegrityError and start nothing.
    The latest row of a schedule also tells a restarted service what it missed.
    """

    _no_comments = True

    id = fields.IntField(primary_key=True)
    pipeline = fields.CharField(max_length=80)
    schedule_key = fields.CharField(max_length=64)
    fire_at = fields.DatetimeField()
    # claimed (run starting), started, skipped (missed past the grace), refused, armed
    outcome = fields.CharField(max_length=16, default="claimed")
    run_id = fields.IntField(null=True)
    detail = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "schedule_fire"
        unique_together = (("pipeline", "schedule_key", "fire_at"),)


class WebhookDelivery(Model):
    """A webhook delivery id already acted on (a redelivery answers the same run)."""

    _no_comments = True

    id = fields.IntField(primary_key=True)
    pipeline = fields.CharField(max_length=80)
    delivery_id = fields.CharField(max_length=128)
    run_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("pipeline", "delivery_id"),)


class ConcurrencyGroup(Model):
    """Who holds a concurrency group: claimed and freed by compare-and-set only."""

    _no_comments = True

    name = fields.CharField(max_length=200, primary_key=True)
    holder_run_id = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "concurrency_group"


# ---- Stable pipeline ids (a pipeline keeps its id, whatever files come and go) ----


class PipelineRecord(Model):
    """A pipeline name seen once: its ``id`` (API ``pipeline_id``) never changes."""

    _no_comments = True

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=80, unique=True)
    first_seen_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "pipeline_record"


# ---- Slack: once-only clicks and the App Home (issue 11) ---------------------------


class SlackClaim(Model):
    """A Slack action taken once service-wide: the first insert of its key wins."""

    _no_comments = True

    # e.g. ``rerun:{run}:{user}`` (bot/rerun.py); single-line docstring: it is
    # the table comment, and multi-line comments break SQLite's DDL.

    key = fields.CharField(max_length=128, primary_key=True)
    run_id = fields.IntField(null=True)
    claimed_at = fields.DatetimeField()

    class Meta:
        table = "slack_claim"


class HomeViewer(Model):
    """Someone who has opened the app's Home tab: their Home is republished on changes."""

    _no_comments = True

    user_id = fields.CharField(max_length=64, primary_key=True)
    opened_at = fields.DatetimeField()

    class Meta:
        table = "home_viewer"
