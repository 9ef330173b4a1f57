"""Block Kit rendering: pure functions from engine snapshots to Slack messages.

Limits Slack enforces (docs/slack.md, Limits): a section's text ≤ 3,000
characters, ≤ 50 blocks per message. Everything shown from a log or a
parameter is escaped (``&``, ``<``, ``>``) so output can never ping a channel
or forge a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import messages as say
from engine.events import RunSnapshot, StepSnapshot
from engine.pipelines import Pipeline
from engine.state import RUN_TERMINAL, StepStatus

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
CANCEL_ACTION_ID = "cancel_run"
# Issue 4 adds approval buttons with these action ids.
APPROVE_ACTION_ID = "approval_approve"
REJECT_ACTION_ID = "approval_reject"
RERUN_ACTION_ID = "rerun_run"

Block = dict[str, Any]


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block] = field(default_factory=list)

    def as_args(self) -> dict[str, Any]:
        if not self.blocks:
            return {"text": self.text}
        return {"text": self.text, "blocks": self.blocks[:MAX_BLOCKS]}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> Block:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def code_block(text: str, limit: int = SECTION_LIMIT - 200) -> str:
    """The end of ``text`` as a code block of at most ``limit`` characters."""
    body = escape(text.rstrip("\n")).replace("```", "`\u200b``")
    room = limit - 8
    if len(body) > room:
        body = "…" + body[-(room - 1) :]
    return f"```\n{body}\n```"


def mentions(text: str) -> str:
    """``@U123`` in engine text (e.g. "rejected by @U123") as a Slack mention."""
    return _MENTION.sub(r"<@\1>", text)


_MENTION = re.compile(r"@([UW][A-Z0-9]{2,})\b")


def parameters_text(params: dict[str, str]) -> str:
    return _parameters(params)


def _parameters(params: dict[str, str]) -> str:
    if not params:
        return say.no_parameters()
    shown = ", ".join(f"`{escape(k)}={escape(v)}`" for k, v in sorted(params.items()))
    return shown if len(shown) < 1500 else shown[:1500] + "…"


def _elapsed(run: RunSnapshot, now: datetime) -> float | None:
    if run.started_at is None:
        return None
    return ((run.finished_at or now) - run.started_at).total_seconds()


def _step_seconds(step: StepSnapshot) -> float | None:
    if step.started_at is None or step.finished_at is None:
        return None
    return (step.finished_at - step.started_at).total_seconds()


def _steps_summary(steps: Iterable[StepSnapshot]) -> str:
    return "\n".join(_summary_line(s) for s in steps)


def _summary_line(step: StepSnapshot) -> str:
    line = say.step_line(step.name, step.status, _step_seconds(step))
    if step.reason and step.status == StepStatus.RUNNING:  # e.g. "Jenkins … unreachable"
        line += " · " + say.step_reason(escape(step.reason))
    return line


def cancel_button(run_id: int) -> Block:
    return {
        "type": "actions",
        "block_id": f"run_actions:{run_id}",
        "elements": [
            {
                "type": "button",
                "action_id": CANCEL_ACTION_ID,
                "value": str(run_id),
                "style": "danger",
                "text": {"type": "plain_text", "text": say.CANCEL_BUTTON},
                "confirm": {
                    "title": {"type": "plain_text", "text": say.CANCEL_CONFIRM_TITLE},
                    "text": {"type": "plain_text", "text": say.CANCEL_CONFIRM_TEXT},
                    "confirm": {"type": "plain_text", "text": say.CANCEL_CONFIRM_YES},
                    "deny": {"type": "plain_text", "text": say.CANCEL_CONFIRM_NO},
                    "style": "danger",
                },
            }
        ],
    }


def rerun_button(run_id: int) -> Block:
    return {
        "type": "actions",
        "block_id": f"run_actions:{run_id}",
        "elements": [
            {
                "type": "button",
                "action_id": RERUN_ACTION_ID,
                "value": str(run_id),
                "text": {"type": "plain_text", "text": say.RERUN_BUTTON},
            }
        ],
    }


def run_card(
    run: RunSnapshot,
    now: datetime,
    cancelling_by: str | None = None,
    rerun_of: int | None = None,
) -> Message:
    """The root message: pipeline, parameters, who, live status, elapsed; Cancel while
    active, Rerun once finished; ``rerun_of`` names the run this one repeats."""
    finished = run.status in RUN_TERMINAL
    facts = [say.started_by(run.triggered_by, run.source)]
    if rerun_of is not None:
        facts.append(say.rerun_of(rerun_of))
    facts += [say.elapsed(_elapsed(run, now), finished), _parameters(run.parameters)]
    blocks: list[Block] = [
        section(say.run_headline(run.pipeline, run.id, run.status)),
        context(" · ".join(facts)),
    ]
    if run.status.value == "queued" and run.queued_behind is not None:
        blocks.append(context(say.queued_behind(run.queued_behind)))
    if run.steps:
        blocks.append(section(_steps_summary(run.steps)))
    if run.status.value == "failed" and run.failed_step:
        blocks.append(section(say.failed_at(escape(run.failed_step), _reason(run.reason))))
    if not finished:
        if cancelling_by:
            blocks.append(context(say.cancelling(cancelling_by)))
        else:
            blocks.append(cancel_button(run.id))
    else:
        blocks.append(rerun_button(run.id))
    return Message(say.run_fallback(run.pipeline, run.id, run.status), blocks)


def _reason(reason: str | None) -> str | None:
    return mentions(escape(reason)) if reason else None


def step_reply(run: RunSnapshot, step: StepSnapshot, attached: bool = False) -> Message:
    """A thread reply for a step's start or end; a failure shows the end of its log."""
    line = say.step_line(escape(step.name), step.status, _step_seconds(step))
    blocks: list[Block] = [section(line)]
    extras: list[str] = []
    if step.reason and step.status in (StepStatus.FAILED, StepStatus.CANCELLED):
        extras.append(say.step_reason(mentions(escape(step.reason))))
    if step.external_url:
        extras.append(say.build_link(step.external_url))
    if extras:
        blocks.append(context(" · ".join(extras)))
    if step.status == StepStatus.FAILED and step.log_tail.strip():
        blocks.append(section(code_block(step.log_tail)))
        if attached:
            blocks.append(context(say.log_attached()))
    text = f"{run.pipeline} #{run.id}: {step.name} {say.STEP_WORD[step.status]}"
    return Message(text, blocks)


def completion(run: RunSnapshot) -> Message:
    """The reply broadcast to the channel when the run ends."""
    line = say.run_finished(run.pipeline, run.id, run.status, run.duration, run.triggered_by)
    blocks: list[Block] = [section(line)]
    if run.failed_step:
        blocks.append(section(say.failed_at(escape(run.failed_step), _reason(run.reason))))
        failed = next((s for s in run.steps if s.name == run.failed_step), None)
        if failed is not None and failed.log_tail.strip():
            blocks.append(section(code_block(failed.log_tail, limit=1500)))
    elif run.reason and run.status.value == "cancelled":
        blocks.append(context(escape(run.reason)))
    text = say.run_fallback(run.pipeline, run.id, run.status)
    if run.failed_step:
        text += f" at step {run.failed_step}"
    return Message(text, blocks)


def run_detail(run: RunSnapshot, now: datetime, rerun_of: int | None = None) -> Message:
    """``/ansflow status ID``: the card without buttons, plus each step's reason."""
    card = run_card(run, now, rerun_of=rerun_of)
    blocks = [b for b in card.blocks if b.get("type") != "actions"]
    return Message(card.text, blocks)


def recent_runs(runs: list[RunSnapshot], now: datetime) -> Message:
    if not runs:
        return Message(say.no_runs(), [section(say.no_runs())])
    lines = [say.recent_runs_title()]
    for run in runs:
        took = say.duration(_elapsed(run, now))
        lines.append(f"{say.run_headline(run.pipeline, run.id, run.status)} · {took}")
    return Message("\n".join(lines), [section("\n".join(lines))])


def _describe(name: str, pipeline: Pipeline) -> str:
    spec = pipeline.parameters[name]
    bits = [f"`{escape(name)}`"]
    if spec.choices:
        bits.append("one of " + ", ".join(f"`{escape(c)}`" for c in spec.choices))
    if spec.pattern:
        bits.append(f"matching `{escape(spec.pattern)}`")
    if spec.default is not None:
        bits.append(f"default `{escape(spec.default)}`")
    elif spec.required:
        bits.append("*required*")
    if spec.description:
        bits.append(f"— {escape(spec.description)}")
    return " ".join(bits)


def pipeline_list(
    pipelines: list[Pipeline], jenkins_notes: dict[str, list[str]] | None = None
) -> Message:
    """Pipelines with their parameters; ``jenkins_notes`` adds the jobs they use and problems."""
    if not pipelines:
        return Message(say.no_pipelines(), [section(say.no_pipelines())])
    blocks: list[Block] = [section(say.pipelines_title())]
    for pipeline in pipelines[: MAX_BLOCKS - 2]:
        lines = [f"*{escape(pipeline.name)}*"]
        if pipeline.description:
            lines[0] += f" — {escape(pipeline.description)}"
        params = [_describe(n, pipeline) for n in pipeline.parameters]
        lines += [f"• {p}" for p in params] or [f"_{say.no_parameters()}_"]
        lines += (jenkins_notes or {}).get(pipeline.name, [])
        blocks.append(section("\n".join(lines)))
    if len(pipelines) > MAX_BLOCKS - 2:
        rest = ", ".join(p.name for p in pipelines[MAX_BLOCKS - 2 :])
        blocks.append(section(f"Also: {escape(rest)}"))
    names = ", ".join(p.name for p in pipelines)
    return Message(f"Pipelines you may run: {names}"[:SECTION_LIMIT], blocks)


def log_view(
    run_id: int, step: StepSnapshot, text: str, whole: bool, attached: bool, running: bool = False
) -> Message:
    header = say.step_line(escape(step.name), step.status, _step_seconds(step))
    if not text.strip():
        return Message(
            say.logs_empty(step.name), [section(header), context(say.logs_empty(step.name))]
        )
    note = say.logs_whole() if whole else say.logs_rest(run_id, step.name, attached)
    if running:
        note = say.logs_so_far()
    blocks = [section(f"Run #{run_id} · {header}"), section(code_block(text)), context(note)]
    return Message(f"Log of {step.name} (run #{run_id})", blocks)


def plain(text: str) -> Message:
    """A private answer: its text once (Slack shows ``text`` when there are no blocks)."""
    return Message(text)
