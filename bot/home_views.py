"""The App Home: pure rendering of what one person may run, ran, and must approve.

A Home view holds at most 100 blocks and each text at most 3,000 characters:
approvals come first in the budget (they need the person), then the recent
runs (one section), then as many pipelines as still fit, with a line saying
how many more there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import messages as say
from bot.approval_views import decision_buttons
from bot.views import (
    Block,
    context,
    escape,
    parameters_text,
    section,
)
from engine.events import RunSnapshot

HOME_RUN_ACTION_ID = "home_run"
MAX_BLOCKS = 100
MAX_APPROVALS = 20
MAX_BUTTON_VALUE = 2000


@dataclass(frozen=True)
class HomePipeline:
    name: str
    description: str | None
    channel: str | None  # where a run started from the Home posts; None: the person's DM


@dataclass(frozen=True)
class HomeRun:
    run: RunSnapshot
    permalink: str | None


@dataclass(frozen=True)
class HomeApproval:
    run_id: int
    approval_id: int
    pipeline: str
    step: str
    started_by: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class HomeData:
    user: str
    pipelines: list[HomePipeline] = field(default_factory=list)
    runs: list[HomeRun] = field(default_factory=list)
    approvals: list[HomeApproval] = field(default_factory=list)


def _run_line(item: HomeRun, now: datetime) -> str:
    run = item.run
    title = say.run_title(escape(run.pipeline), run.id)
    shown = f"<{item.permalink}|{title}>" if item.permalink else f"*{title}*"
    end = run.finished_at or now
    took = say.duration((end - run.started_at).total_seconds() if run.started_at else None)
    return f"{say.RUN_EMOJI[run.status]} {shown} {say.RUN_WORD[run.status]} · {took}"


def _runs_section(runs: list[HomeRun], now: datetime) -> Block:
    if not runs:
        return section(say.home_no_runs())
    lines: list[str] = []
    size = 0
    for item in runs:
        line = _run_line(item, now)
        if size + len(line) + 1 > 2900:
            break
        lines.append(line)
        size += len(line) + 1
    return section("\n".join(lines))


def _approval_blocks(item: HomeApproval) -> list[Block]:
    text = say.home_approval(escape(item.step), escape(item.pipeline), item.run_id, item.started_by)
    buttons = decision_buttons(item.run_id, item.approval_id, f"home_approval:{item.approval_id}")
    return [
        section(text + "\n" + parameters_text(item.parameters)),
        buttons,
    ]


def _pipeline_block(item: HomePipeline) -> Block:
    line = f"*{escape(item.name)}*"
    if item.description:
        line += f" — {escape(item.description)}"
    line += f"\n_{say.home_run_where(item.channel)}_"
    block = section(line)
    if len(item.name) <= MAX_BUTTON_VALUE:
        block["accessory"] = {
            "type": "button",
            "action_id": HOME_RUN_ACTION_ID,
            "value": item.name,
            "text": {"type": "plain_text", "text": say.RUN_BUTTON},
        }
    return block


def home_view(data: HomeData, now: datetime) -> dict[str, Any]:
    """The ``type: home`` view for ``data.user``."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": say.home_title()}}
    ]
    blocks.append(section(say.home_approvals_title()))
    shown = data.approvals[:MAX_APPROVALS]
    for item in shown:
        blocks += _approval_blocks(item)
    if not shown:
        blocks.append(context(say.home_no_approvals()))
    elif len(data.approvals) > len(shown):
        blocks.append(context(say.home_more_approvals(len(data.approvals) - len(shown))))
    blocks += [{"type": "divider"}, section(say.home_runs_title()), _runs_section(data.runs, now)]
    blocks += [{"type": "divider"}, section(say.home_pipelines_title())]
    room = MAX_BLOCKS - len(blocks)
    pipelines = data.pipelines
    if not pipelines:
        blocks.append(context(say.home_no_pipelines()))
    elif len(pipelines) <= room:
        blocks += [_pipeline_block(p) for p in pipelines]
    else:
        blocks += [_pipeline_block(p) for p in pipelines[: room - 1]]
        blocks.append(context(say.home_more_pipelines(len(pipelines) - (room - 1))))
    return {"type": "home", "callback_id": "ansflow_home", "blocks": blocks}
