"""The parameter form and the pipeline picker (Slack modals): pure rendering and reading.

Limits Slack enforces on a modal (docs/slack.md, "Limits"): ≤ 100 blocks, a
title and button texts ≤ 24 characters, ``private_metadata`` ≤ 3,000, a
select ≤ 100 options whose text is ≤ 75 and value ≤ 150 characters, a text
input's value ≤ 3,000. A parameter whose choices do not fit a select gets a
text input (its choices in the hint); a pipeline with more parameters than a
modal holds gets no form (:func:`parameter_form` returns None).

``private_metadata`` carries the pipeline, the channel to post in and the
person, signed with an HMAC (:func:`sign_context`): a submission whose
metadata was changed is refused by :func:`read_context`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from bot import messages as say
from bot.views import Block, escape
from engine.pipelines import Pipeline

FORM_CALLBACK = "run_form"
PICKER_CALLBACK = "run_picker"
NOTICE_CALLBACK = "run_notice"
VALUE_ACTION = "value"
PICKER_BLOCK = "pipeline"
PARAM_PREFIX = "param:"
MAX_BLOCKS = 100
HEAD_BLOCKS = 2
MAX_TEXT = 3000
MAX_LABEL = 2000
MAX_HINT = 2000
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150

View = dict[str, Any]


@dataclass(frozen=True)
class FormContext:
    """Who fills the form and where the run will post (None: the person's DM)."""

    pipeline: str
    user: str
    channel: str | None


def _digest(body: str, key: bytes) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]


def sign_context(context: FormContext, key: bytes) -> str:
    data = {"p": context.pipeline, "u": context.user, "c": context.channel or ""}
    body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    return f"{body}.{_digest(body, key)}"


def read_context(text: str, key: bytes) -> FormContext | None:
    """The context a form was opened with; None when missing, malformed or not ours."""
    body, _, digest = text.rpartition(".")
    if not body or not hmac.compare_digest(digest, _digest(body, key)):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pipeline, user, channel = data.get("p"), data.get("u"), data.get("c")
    if not (isinstance(pipeline, str) and isinstance(user, str) and isinstance(channel, str)):
        return None
    return FormContext(pipeline, user, channel or None)


def plain_text(text: str, limit: int) -> dict[str, Any]:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text or " "}


def _mrkdwn_section(text: str) -> Block:
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text[:MAX_TEXT]}


def block_of(name: str) -> str:
    return PARAM_PREFIX + name


def _option(value: str) -> dict[str, Any]:
    return {"text": plain_text(value, MAX_OPTION_TEXT), "value": value}


def _fits_select(choices: list[str] | None) -> bool:
    return (
        choices is not None
        and 0 < len(choices) <= MAX_OPTIONS
        and all(0 < len(c) <= MAX_OPTION_TEXT and len(c) <= MAX_OPTION_VALUE for c in choices)
    )


def parameter_input(pipeline: Pipeline, name: str, given: str | None) -> Block:
    spec = pipeline.parameters[name]
    initial = given if given is not None else spec.default
    element: dict[str, Any]
    if _fits_select(spec.choices):
        assert spec.choices is not None
        element = {"type": "static_select", "action_id": VALUE_ACTION}
        element["options"] = [_option(c) for c in spec.choices]
        if initial is not None and initial in spec.choices:
            element["initial_option"] = _option(initial)
        hint = say.form_hint(spec.description, spec.pattern, None)
    else:
        element = {"type": "plain_text_input", "action_id": VALUE_ACTION, "max_length": MAX_TEXT}
        if initial is not None and 0 < len(initial) <= MAX_TEXT:
            element["initial_value"] = initial
        hint = say.form_hint(spec.description, spec.pattern, spec.choices)
    block: Block = {
        "type": "input",
        "block_id": block_of(name),
        "label": plain_text(name, MAX_LABEL),
        "element": element,
        "optional": not (spec.required and spec.default is None),
    }
    if hint:
        block["hint"] = plain_text(hint, MAX_HINT)
    return block


def _modal(
    callback: str, title: str, blocks: list[Block], metadata: str, submit: str | None
) -> View:
    view: View = {
        "type": "modal",
        "callback_id": callback,
        "title": plain_text(title, 24),
        "close": plain_text(say.FORM_CLOSE, 24),
        "blocks": blocks,
        "private_metadata": metadata,
    }
    if submit is not None:
        view["submit"] = plain_text(submit, 24)
    return view


def parameter_form(
    pipeline: Pipeline, context: FormContext, key: bytes, given: dict[str, str] | None = None
) -> View | None:
    """One input per parameter, defaults (or values already typed) filled in."""
    names = list(pipeline.parameters)
    if len(names) > MAX_BLOCKS - HEAD_BLOCKS:
        return None
    intro = say.form_intro(escape(pipeline.name), escape(pipeline.description or "") or None)
    blocks: list[Block] = [
        _mrkdwn_section(intro),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": say.form_where(context.channel)}],
        },
    ]
    values = given or {}
    blocks += [parameter_input(pipeline, n, values.get(n)) for n in names]
    if not names:
        blocks.append(_mrkdwn_section(say.form_no_parameters()))
    metadata = sign_context(context, key)
    return _modal(FORM_CALLBACK, say.FORM_TITLE, blocks, metadata, say.FORM_SUBMIT)


def picker(names: list[str], context: FormContext, key: bytes) -> View:
    """A select of the pipelines the person may run; ``Next`` turns it into their form."""
    shown = [n for n in names if len(n) <= MAX_OPTION_VALUE][:MAX_OPTIONS]
    blocks: list[Block] = [
        {
            "type": "input",
            "block_id": PICKER_BLOCK,
            "label": plain_text(say.PICKER_LABEL, MAX_LABEL),
            "element": {
                "type": "static_select",
                "action_id": VALUE_ACTION,
                "options": [_option(n) for n in shown],
            },
        }
    ]
    if len(names) > len(shown):
        more = say.picker_more(len(names) - len(shown))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    metadata = sign_context(context, key)
    return _modal(PICKER_CALLBACK, say.PICKER_TITLE, blocks, metadata, say.PICKER_SUBMIT)


def notice(text: str) -> View:
    """A modal that only says something (a submission that cannot go on)."""
    view = _modal(NOTICE_CALLBACK, say.NOTICE_TITLE, [_mrkdwn_section(text)], "", None)
    view["close"] = plain_text(say.NOTICE_CLOSE, 24)
    return view


def submitted_values(state: dict[str, Any]) -> dict[str, str]:
    """``view.state.values`` as ``{parameter: value}``; empty inputs are left out."""
    values: dict[str, str] = {}
    for block_id, actions in (state.get("values") or {}).items():
        if not str(block_id).startswith(PARAM_PREFIX) or not isinstance(actions, dict):
            continue
        entry = actions.get(VALUE_ACTION) or {}
        value = entry.get("value")
        if value is None:
            value = (entry.get("selected_option") or {}).get("value")
        if isinstance(value, str) and value != "":
            values[str(block_id)[len(PARAM_PREFIX) :]] = value
    return values


def picked(state: dict[str, Any]) -> str | None:
    entry = ((state.get("values") or {}).get(PICKER_BLOCK) or {}).get(VALUE_ACTION) or {}
    value = (entry.get("selected_option") or {}).get("value")
    return value if isinstance(value, str) and value else None


def input_block_ids(view: dict[str, Any]) -> list[str]:
    return [
        str(b["block_id"])
        for b in view.get("blocks") or []
        if isinstance(b, dict) and b.get("type") == "input" and b.get("block_id")
    ]
