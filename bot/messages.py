"""Every sentence the bot shows a person, in one place (docs/development.md).

Small pure functions; ``bot/views.py`` arranges them into Block Kit.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.state import RunStatus, StepStatus

RUN_EMOJI: dict[RunStatus, str] = {
    RunStatus.PENDING: ":hourglass_flowing_sand:",
    RunStatus.QUEUED: ":double_vertical_bar:",
    RunStatus.RUNNING: ":arrows_counterclockwise:",
    RunStatus.WAITING_APPROVAL: ":raised_hand:",
    RunStatus.SUCCESS: ":white_check_mark:",
    RunStatus.FAILED: ":x:",
    RunStatus.CANCELLED: ":no_entry_sign:",
}

RUN_WORD: dict[RunStatus, str] = {
    RunStatus.PENDING: "queued",
    RunStatus.QUEUED: "queued",
    RunStatus.RUNNING: "running",
    RunStatus.WAITING_APPROVAL: "waiting for approval",
    RunStatus.SUCCESS: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}

STEP_EMOJI: dict[StepStatus, str] = {
    StepStatus.PENDING: ":white_circle:",
    StepStatus.RUNNING: ":arrows_counterclockwise:",
    StepStatus.WAITING_APPROVAL: ":raised_hand:",
    StepStatus.SUCCESS: ":white_check_mark:",
    StepStatus.FAILED: ":x:",
    StepStatus.CANCELLED: ":no_entry_sign:",
    StepStatus.SKIPPED: ":fast_forward:",
}

STEP_WORD: dict[StepStatus, str] = {
    StepStatus.PENDING: "pending",
    StepStatus.RUNNING: "started",
    StepStatus.WAITING_APPROVAL: "waiting for approval",
    StepStatus.SUCCESS: "succeeded",
    StepStatus.FAILED: "failed",
    StepStatus.CANCELLED: "cancelled",
    StepStatus.SKIPPED: "skipped",
}

APPROVE_BUTTON = "Approve"
REJECT_BUTTON = "Reject"
CANCEL_BUTTON = "Cancel"
CANCEL_CONFIRM_TITLE = "Cancel this run?"
CANCEL_CONFIRM_TEXT = "Running steps are stopped and the remaining steps are skipped."
CANCEL_CONFIRM_YES = "Cancel the run"
CANCEL_CONFIRM_NO = "Keep it running"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def user(user_id: str) -> str:
    """A Slack mention for Slack ids; other names (API subjects, the terminal) as they are."""
    if user_id and user_id[0] in "UW" and user_id.isalnum() and user_id.isupper():
        return f"<@{user_id}>"
    return f"`{user_id}`" if user_id else "someone"


def run_title(pipeline: str, run_id: int) -> str:
    return f"{pipeline} #{run_id}"


def run_headline(pipeline: str, run_id: int, status: RunStatus) -> str:
    return f"{RUN_EMOJI[status]} *{run_title(pipeline, run_id)}* {RUN_WORD[status]}"


def run_fallback(pipeline: str, run_id: int, status: RunStatus) -> str:
    return f"{run_title(pipeline, run_id)} {RUN_WORD[status]}"


def started_by(user_id: str, source: str) -> str:
    via = {
        "slack": "",
        "api": " via the API",
        "cli": " from the terminal",
        "schedule": " on its timetable",
        "webhook": " by a webhook delivery",
    }.get(source, "")
    return f"Started by {user(user_id)}{via}"


def elapsed(seconds: float | None, finished: bool) -> str:
    return f"{'Took' if finished else 'Elapsed'} {duration(seconds)}"


def next_fire(at: datetime) -> str:
    """When a pipeline's schedule fires next, in the reader's own timezone (UTC as fallback)."""
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"
    return f":alarm_clock: Next scheduled run: {shown}"


def queued_behind(run_id: int) -> str:
    return f":double_vertical_bar: Queued behind #{run_id}: starts once its group is free."


def cancelling(by: str) -> str:
    return f":hourglass: Cancelling (asked by {user(by)})…"


def step_line(name: str, status: StepStatus, seconds: float | None = None) -> str:
    took = (
        f" in {duration(seconds)}" if seconds is not None and status != StepStatus.RUNNING else ""
    )
    return f"{STEP_EMOJI[status]} *{name}* {STEP_WORD[status]}{took}"


def step_reason(reason: str) -> str:
    return f"Reason: {reason}"


def build_link(url: str) -> str:
    return f"<{url}|Open the build>"


def log_attached() -> str:
    return "The whole log is attached below."


def log_file_title(pipeline: str, run_id: int, step: str) -> str:
    return f"{run_title(pipeline, run_id)} — {step} log"


def run_finished(
    pipeline: str, run_id: int, status: RunStatus, seconds: float | None, by: str
) -> str:
    return (
        f"{RUN_EMOJI[status]} *{run_title(pipeline, run_id)}* {RUN_WORD[status]} "
        f"after {duration(seconds)} (started by {user(by)})"
    )


def failed_at(step: str, reason: str | None) -> str:
    return f"Failed at step *{step}*" + (f": {reason}" if reason else "")


# ---- replies to commands and clicks (shown only to the asker) -------------------


def cancel_requested(run_id: int) -> str:
    return f"Cancelling run #{run_id}…"


def cancel_already(run_id: int) -> str:
    return f"Run #{run_id} is already being cancelled."


def apology(reference: str) -> str:
    return (
        "Sorry, something went wrong on our side. "
        f"Please try again; if it keeps happening, give an admin the reference `{reference}`."
    )


def bad_run_id(text: str) -> str:
    return f"`{text}` is not a run id: use the number shown on the run, e.g. `42`."


def usage(command: str) -> str:
    return f"Usage: `/ansflow {USAGE[command]}`"


def unknown_command(name: str) -> str:
    return f"There is no command `{name}`. " + help_text()


def unexpected_args(command: str, extra: list[str]) -> str:
    shown = " ".join(extra)
    return f"Unexpected `{shown}`. {usage(command)}"


def unexpected_params(command: str, keys: list[str]) -> str:
    return f"`{command}` takes no key=value parameters (got {', '.join(keys)}). {usage(command)}"


def no_runs() -> str:
    return "You have not started any runs yet. Try `/ansflow list`."


def recent_runs_title() -> str:
    return "*Your recent runs*"


def no_pipelines() -> str:
    return "There are no pipelines you may run here."


def pipelines_title() -> str:
    return "*Pipelines you may run here*"


def no_parameters() -> str:
    return "no parameters"


def logs_empty(step: str) -> str:
    return f"Step *{step}* has no output (yet)."


def logs_rest(run_id: int, step: str, attached: bool) -> str:
    where = "It is attached as a file in the run's thread, or get it" if attached else "Get it"
    return (
        f"This is the end of the log. {where} with "
        f"`GET /api/v1/cicd/executions/{run_id}/logs/?step={step}`."
    )


def logs_whole() -> str:
    return "This is the whole log."


def logs_so_far() -> str:
    return "The step is still running: this is its output so far. Ask again to see more."


def logs_no_step(run_id: int) -> str:
    return f"Run #{run_id} has not started any step yet."


USAGE: dict[str, str] = {
    "run": "run PIPELINE [key=value …]",
    "status": "status [RUN_ID]",
    "cancel": "cancel RUN_ID",
    "logs": "logs RUN_ID [STEP]",
    "list": "list",
    "help": "help",
}

_DESCRIPTIONS: dict[str, str] = {
    "run": (
        'start a pipeline; quote values with spaces: `msg="two words"`. '
        "Values left out open a form; `/ansflow run` alone lets you pick the pipeline"
    ),
    "status": "one run in detail, or your recent runs",
    "cancel": "cancel a run (its starter, its approvers and admins)",
    "logs": "the end of a step's log (default: the failed or latest step)",
    "list": "the pipelines you may run, with their parameters",
    "help": "this help",
}


def help_text() -> str:
    lines = ["*AnsFlow commands*"]
    lines += [f"• `/ansflow {USAGE[name]}` — {_DESCRIPTIONS[name]}" for name in USAGE]
    return "\n".join(lines)


# ---- approvals ------------------------------------------------------------


def approval_request(approvers: str, step: str, pipeline: str, run_id: int, required: int) -> str:
    needed = "" if required == 1 else f" ({required} approvals needed)"
    return f":raised_hand: {approvers}: *{step}* of *{pipeline} #{run_id}* needs approval{needed}."


def asked_by(user_id: str) -> str:
    return f"asked by {user(user_id)}"


def approvals_so_far(gate: object) -> str:
    decisions = getattr(gate, "decisions", ())
    count = sum(1 for d in decisions if d.decision == "approve")
    return f"{count} of {getattr(gate, 'required', 1)} approvals"


def approval_timed_out() -> str:
    return ":hourglass: Approval timed out; the run failed."


def approval_cancelled() -> str:
    return ":black_square_for_stop: The run was cancelled before this was decided."


def approval_recorded(decision: str, remaining: int) -> str:
    if decision == "reject":
        return "You rejected it; the run stops."
    if remaining > 0:
        return f"Your approval is recorded; {remaining} more needed."
    return "Approved; the run goes on."


def approval_bad_button() -> str:
    return "This button is not one of ours any more; use `/ansflow status` to see the run."


# ---- the parameter form, Rerun, the App Home (issue 11) -------------------------

RERUN_BUTTON = "Rerun"
RUN_BUTTON = "Run"
FORM_TITLE = "Run a pipeline"
PICKER_TITLE = "Choose a pipeline"
FORM_SUBMIT = "Run"
PICKER_SUBMIT = "Next"
FORM_CLOSE = "Cancel"
NOTICE_TITLE = "AnsFlow"
NOTICE_CLOSE = "Close"
PICKER_LABEL = "Pipeline"


def database_down() -> str:
    return "The service cannot reach its database right now; try again shortly."


def no_such_pipeline(name: str, close: list[str], runnable: list[str]) -> str:
    shown = f"There is no pipeline named `{name}`."
    if close:
        return shown + " Did you mean " + ", ".join(f"`{c}`" for c in close) + "?"
    if runnable:
        listed = ", ".join(f"`{p}`" for p in runnable[:15])
        more = f" and {len(runnable) - 15} more (`/ansflow list`)" if len(runnable) > 15 else ""
        return f"{shown} Pipelines you may run here: {listed}{more}."
    return f"{shown} See `/ansflow list` for the pipelines you may run here."


def rerun_of(run_id: int) -> str:
    return f"rerun of #{run_id}"


def rerun_already(run_id: int | None) -> str:
    if run_id is None:
        return "You just pressed Rerun on this run; one rerun is starting."
    return f"You already reran this run: #{run_id}."


def rerun_not_finished(run_id: int) -> str:
    return f"Run #{run_id} has not ended yet; Rerun is for finished runs."


def form_intro(pipeline: str, description: str | None) -> str:
    return f"*{pipeline}*" + (f" — {description}" if description else "")


def form_where(channel: str | None) -> str:
    if channel:
        return f"The run will post in <#{channel}>."
    return "The run will post in your direct messages with the bot."


def form_hint(description: str | None, pattern: str | None, choices: list[str] | None) -> str:
    parts = [description] if description else []
    if pattern:
        parts.append(f"Must match the pattern {pattern}")
    if choices:
        parts.append("One of: " + ", ".join(choices))
    return ". ".join(parts)


def form_no_parameters() -> str:
    return "This pipeline takes no parameters."


def form_too_big(pipeline: str, count: int) -> str:
    return (
        f"`{pipeline}` has {count} parameters, more than a Slack form can hold. "
        f"Start it with `/ansflow run {pipeline} key=value …` instead (`/ansflow list` shows them)."
    )


def form_stale() -> str:
    return "This form is no longer valid. Open it again with `/ansflow run`."


def form_pipeline_gone(name: str) -> str:
    return f"The pipeline `{name}` no longer exists. See `/ansflow list`."


def picker_more(count: int) -> str:
    return f"{count} more are not shown here: start them with `/ansflow run PIPELINE`."


def picker_none() -> str:
    return "There are no pipelines you may run here."


def home_title() -> str:
    return "AnsFlow"


def home_pipelines_title() -> str:
    return "*Pipelines you may run*"


def home_no_pipelines() -> str:
    return "_There are no pipelines you may run from here._"


def home_more_pipelines(count: int) -> str:
    return f"{count} more: see `/ansflow list`."


def home_runs_title() -> str:
    return "*Your recent runs*"


def home_no_runs() -> str:
    return "_You have not started any runs yet._"


def home_approvals_title() -> str:
    return "*Waiting for your approval*"


def home_no_approvals() -> str:
    return "_Nothing is waiting for your approval._"


def home_more_approvals(count: int) -> str:
    return f"{count} more are waiting: see the run threads."


def home_approval(step: str, pipeline: str, run_id: int, by: str) -> str:
    return f":raised_hand: *{step}* of *{pipeline} #{run_id}* (started by {user(by)})"


def home_run_where(channel: str | None) -> str:
    return f"posts in <#{channel}>" if channel else "posts in your DM"


def form_not_opened(code: str) -> str:
    if code in ("expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"):
        return "Slack did not let the form open in time. Please run the command again."
    return f"The form could not be opened ({code}). Please try again."


def picker_none_chosen() -> str:
    return "Choose a pipeline."
