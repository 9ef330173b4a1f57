"""Modals, the App Home, permalinks and DMs of the fake Slack (views.*, chat.getPermalink,
conversations.open), with the rules Slack enforces (docs/slack.md, "Limits").

A trigger_id is what Slack hands out with each interaction: `issue_trigger()`
makes one; `views.open` refuses it when unknown (`invalid_trigger_id`), older
than 3 s (`expired_trigger_id`) or used before (`exchanged_trigger_id`). A
view that breaks Block Kit's limits is refused with `invalid_arguments` and the
reason kept in `view_errors`.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .slack_store import TEAM_ID, SlackError, SlackStore, decode_json

TRIGGER_SECONDS = 3.0
MAX_VIEW_BLOCKS = 100
MAX_TITLE = 24
MAX_BUTTON_TEXT = 24
MAX_METADATA = 3000
MAX_TEXT = 3000
MAX_LABEL = 2000
MAX_HINT = 2000
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_BLOCK_ID = 255

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class OpenedView:
    """A modal as it stands (the last views.open / views.update of it)."""

    id: str
    user: str | None
    trigger_id: str | None
    view: dict[str, Any]
    opened_at: float
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def callback_id(self) -> str:
        return str(self.view.get("callback_id") or "")

    @property
    def private_metadata(self) -> str:
        return str(self.view.get("private_metadata") or "")

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return list(self.view.get("blocks") or [])

    def input_blocks(self) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b.get("type") == "input"]


@dataclass(frozen=True)
class PublishedHome:
    user: str
    view: dict[str, Any]
    at: float


def _plain(value: Any, limit: int, what: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or value.get("type") != "plain_text":
        problems.append(f"{what} must be a plain_text object")
        return
    text = str(value.get("text") or "")
    if not text:
        problems.append(f"{what} must not be empty")
    elif len(text) > limit:
        problems.append(f"{what} is longer than {limit} characters")


def _text(value: Any, what: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or value.get("type") not in ("plain_text", "mrkdwn"):
        problems.append(f"{what} must be a text object")
    elif len(str(value.get("text") or "")) > MAX_TEXT:
        problems.append(f"{what} is longer than {MAX_TEXT} characters")


def _element(element: Any, where: str, problems: list[str]) -> None:
    if not isinstance(element, dict):
        problems.append(f"{where}: element must be an object")
        return
    kind = element.get("type")
    if kind in ("static_select", "multi_static_select"):
        options = element.get("options") or []
        if not options or len(options) > MAX_OPTIONS:
            problems.append(f"{where}: a select needs 1 to {MAX_OPTIONS} options")
        values = [o.get("value") for o in options if isinstance(o, dict)]
        for option in options:
            _plain(option.get("text"), MAX_OPTION_TEXT, f"{where}: option text", problems)
            if len(str(option.get("value") or "")) > MAX_OPTION_VALUE:
                problems.append(f"{where}: option value longer than {MAX_OPTION_VALUE}")
        initial = element.get("initial_option")
        if initial is not None and initial.get("value") not in values:
            problems.append(f"{where}: initial_option is not one of the options")
    elif kind == "plain_text_input":
        initial = element.get("initial_value")
        if initial is not None and len(str(initial)) > MAX_TEXT:
            problems.append(f"{where}: initial_value longer than {MAX_TEXT}")
    elif kind == "button":
        _plain(element.get("text"), 75, f"{where}: button text", problems)
    elif kind not in ("plain_text", "mrkdwn", "image", "overflow", "datepicker"):
        problems.append(f"{where}: unsupported element type {kind!r}")


def view_problems(view: Any, *, kind: str) -> list[str]:
    """Why Slack would refuse ``view`` (empty when it would take it)."""
    if not isinstance(view, dict):
        return ["view must be an object"]
    problems: list[str] = []
    if view.get("type") != kind:
        problems.append(f"view type must be {kind!r}")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [*problems, "blocks must be a list"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(f"{len(blocks)} blocks: a view holds at most {MAX_VIEW_BLOCKS}")
    if len(str(view.get("private_metadata") or "")) > MAX_METADATA:
        problems.append(f"private_metadata is longer than {MAX_METADATA} characters")
    if kind == "modal":
        _plain(view.get("title"), MAX_TITLE, "title", problems)
        for button in ("submit", "close"):
            if view.get(button) is not None:
                _plain(view[button], MAX_BUTTON_TEXT, button, problems)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and view.get("submit") is None:
            problems.append("a modal with input blocks needs a submit button")
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            problems.append(f"{where} must be an object")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if len(str(block_id)) > MAX_BLOCK_ID or str(block_id) in seen:
                problems.append(f"{where}: block_id too long or repeated")
            seen.add(str(block_id))
        btype = block.get("type")
        if btype == "input":
            _plain(block.get("label"), MAX_LABEL, f"{where}: label", problems)
            if block.get("hint") is not None:
                _plain(block["hint"], MAX_HINT, f"{where}: hint", problems)
            _element(block.get("element"), where, problems)
        elif btype == "section":
            if block.get("text") is None and block.get("fields") is None:
                problems.append(f"{where}: a section needs text or fields")
            if block.get("text") is not None:
                _text(block["text"], f"{where}: text", problems)
            if block.get("accessory") is not None:
                _element(block["accessory"], where, problems)
        elif btype in ("actions", "context"):
            elements = block.get("elements") or []
            if not elements or len(elements) > (25 if btype == "actions" else 10):
                problems.append(f"{where}: wrong number of elements")
            for element in elements:
                _element(element, where, problems)
        elif btype == "header":
            _plain(block.get("text"), 150, f"{where}: header", problems)
        elif btype != "divider":
            problems.append(f"{where}: unsupported block type {btype!r}")
    return problems


class ViewsApi:
    """State and handlers for views.*, chat.getPermalink and conversations.open."""

    def __init__(self, store: SlackStore) -> None:
        self.store = store
        self._triggers: dict[str, float] = {}
        self._used: set[str] = set()
        self._ids = itertools.count(1)
        self.views: dict[str, OpenedView] = {}
        self.homes: list[PublishedHome] = []
        self.view_errors: list[str] = []
        self.dms: dict[str, str] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "views.open": self._open,
            "views.update": self._update,
            "views.publish": self._publish,
            "chat.getPermalink": self._permalink,
            "conversations.open": self._conversations_open,
        }

    def issue_trigger(self, at: float | None = None) -> str:
        trigger = f"{next(self._ids)}.{int(time.time())}.{TEAM_ID.lower()}"
        self._triggers[trigger] = time.monotonic() if at is None else at
        return trigger

    def home_of(self, user: str) -> dict[str, Any] | None:
        found = [h for h in self.homes if h.user == user]
        return found[-1].view if found else None

    def _check_view(self, args: dict[str, Any], kind: str) -> dict[str, Any]:
        view = decode_json(args.get("view"), error="invalid_arguments")
        problems = view_problems(view, kind=kind)
        if problems:
            self.view_errors.extend(problems)
            raise SlackError("invalid_arguments")
        return copy.deepcopy(view)  # type: ignore[no-any-return]

    def _new_view(self, view: dict[str, Any], user: str | None, trigger: str | None) -> OpenedView:
        opened = OpenedView(f"V{next(self._ids):010d}", user, trigger, view, time.monotonic())
        self.views[opened.id] = opened
        return opened

    def _api_view(self, opened: OpenedView) -> dict[str, Any]:
        return {
            **copy.deepcopy(opened.view),
            "id": opened.id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{opened.id}.{len(opened.versions)}",
        }

    async def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        issued = self._triggers.get(trigger)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if trigger in self._used:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        view = self._check_view(args, "modal")
        self._used.add(trigger)
        return {"ok": True, "view": self._api_view(self._new_view(view, None, trigger))}

    async def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        opened = self.views.get(str(args.get("view_id") or ""))
        if opened is None:
            raise SlackError("not_found")
        view = self._check_view(args, "modal")
        opened.versions.append(opened.view)
        opened.view = view
        return {"ok": True, "view": self._api_view(opened)}

    async def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = args.get("user_id")
        if not isinstance(user, str) or not user.startswith(("U", "W")):
            raise SlackError("invalid_arguments")
        view = self._check_view(args, "home")
        self.homes.append(PublishedHome(user, view, time.monotonic()))
        opened = self._new_view(view, user, None)
        return {"ok": True, "view": self._api_view(opened)}

    async def _permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.store.resolve(args.get("channel"))
        ts = str(args.get("message_ts") or "")
        msg = self.store.find(channel, ts)
        link = f"https://fake-workspace.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if msg.is_reply and msg.thread_ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    async def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if not users or "," in users:
            raise SlackError("user_not_found" if not users else "not_implemented")
        if users not in self.dms:
            self.dms[users] = f"D{len(self.dms) + 1:010d}"
        return {"ok": True, "channel": {"id": self.dms[users]}}
