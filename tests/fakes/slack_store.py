"""In-memory state of the fake Slack workspace: calls, messages, files.

Pure data and rules, no HTTP; `tests.fakes.slack` serves it. Errors are
raised as `SlackError(code)` carrying Slack's own error strings.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

BOT_USER_ID = "U0BOT00001"
BOT_ID = "B0BOT00001"
TEAM_ID = "T0TEAM0001"
APP_ID = "A0APP00001"

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_TEXT = 40000
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


class SlackError(Exception):
    """A Slack API error code such as `message_not_found`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it. `at` is `time.monotonic()`."""

    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class StoredMessage:
    """A message as it stands now; `versions` holds each earlier state."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    edited_ts: str | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    # time.monotonic() from which conversations.history/replies show it
    visible_at: float = 0.0

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def action_ids(self) -> list[str]:
        """Every `action_id` in the blocks (buttons and other elements)."""
        return [e["action_id"] for e in _elements(self.blocks or []) if "action_id" in e]

    def to_api(self, *, with_metadata: bool = True, reply_count: int = 0) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks is not None:
            msg["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts is not None:
            msg["thread_ts"] = self.thread_ts
        if self.is_reply and self.reply_broadcast:
            msg["subtype"] = "thread_broadcast"
        if reply_count:
            msg["reply_count"] = reply_count
        if self.edited_ts is not None:
            msg["edited"] = {"user": BOT_USER_ID, "ts": self.edited_ts}
        if with_metadata and self.metadata is not None:
            msg["metadata"] = copy.deepcopy(self.metadata)
        return msg


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


class ChannelPacer:
    """Token bucket per channel: `burst` at once, then `per_second`."""

    def __init__(self, per_second: float, burst: int = 1) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, channel: str | None) -> int | None:
        """Spend one token; when none is left return Retry-After seconds."""
        if channel is None:
            return None
        now = time.monotonic()
        tokens, updated = self._buckets.get(channel, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.per_second)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return None
        self._buckets[channel] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.per_second))


def _elements(blocks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for block in blocks:
        yield block
        if isinstance(block.get("accessory"), dict):
            yield block["accessory"]
        for element in block.get("elements") or []:
            if isinstance(element, dict):
                yield element


def decode_json(value: Any, *, error: str) -> Any:
    """Form bodies carry lists and objects as JSON strings; JSON bodies do not."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    return value


def validate_blocks(value: Any) -> list[dict[str, Any]] | None:
    """The limits Slack enforces that our renderer could break."""
    if value is None or value == "":
        return None
    blocks = decode_json(value, error="invalid_blocks_format")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        text = block.get("text")
        too_long = isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT
        if block["type"] == "section" and too_long:
            raise SlackError("invalid_blocks")
    return blocks


def validate_metadata(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    metadata = decode_json(value, error="invalid_metadata_format")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
        raise SlackError("invalid_metadata_format")
    if not isinstance(metadata.get("event_payload", {}), dict):
        raise SlackError("invalid_metadata_format")
    return metadata


def _visible(message: StoredMessage) -> bool:
    return message.visible_at <= time.monotonic()


def truthy(value: Any) -> bool:
    return value is True or value == 1 or str(value).lower() in ("1", "true")


class SlackStore:
    """Messages per channel, ephemerals and files, with Slack's rules."""

    def __init__(self) -> None:
        self._ts_counter = 0
        self._messages: dict[str, dict[str, StoredMessage]] = {}
        self._channel_ids: dict[str, str] = {}
        self.ephemerals: list[Ephemeral] = []
        self.files: dict[str, UploadedFile] = {}
        self.users: dict[str, dict[str, Any]] = {}
        # Seconds between chat.postMessage answering and the message showing up
        # in conversations.history/replies (real Slack is eventually consistent).
        self.visibility_delay = 0.0

    def next_ts(self) -> str:
        """Unique, increasing, shaped like Slack's: `1700000000.000100`."""
        self._ts_counter += 100
        return f"{1_700_000_000 + self._ts_counter // 1_000_000}.{self._ts_counter % 1_000_000:06d}"

    def resolve(self, channel: Any) -> str:
        """Channel ids pass through; `#name` and `name` get a stable id."""
        if not isinstance(channel, str) or not channel:
            raise SlackError("channel_not_found")
        if channel[0] in "CDG" and channel[1:].isalnum() and channel.isupper():
            return channel
        name = channel.lstrip("#")
        if name not in self._channel_ids:
            self._channel_ids[name] = f"C{len(self._channel_ids) + 1:010d}"
        return self._channel_ids[name]

    def channel_key(self, channel: Any) -> str | None:
        try:
            return self.resolve(channel)
        except SlackError:
            return None

    def channel_messages(self, channel: str) -> list[StoredMessage]:
        return sorted(
            self._messages.get(self.resolve(channel), {}).values(), key=lambda m: float(m.ts)
        )

    def find(self, channel: str, ts: Any) -> StoredMessage:
        msg = self._messages.get(channel, {}).get(str(ts))
        if msg is None:
            raise SlackError("message_not_found")
        return msg

    def replies_of(self, channel: str, root_ts: str) -> list[StoredMessage]:
        return [m for m in self.channel_messages(channel) if m.is_reply and m.thread_ts == root_ts]

    def post(self, args: dict[str, Any]) -> StoredMessage:
        channel = self.resolve(args.get("channel"))
        text = str(args.get("text") or "")
        blocks = validate_blocks(args.get("blocks"))
        if not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        metadata = validate_metadata(args.get("metadata"))
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None:
            try:
                root = self.find(channel, thread_ts)
            except SlackError:
                raise SlackError("invalid_thread_ts") from None
            thread_ts = root.thread_ts or root.ts
        msg = StoredMessage(
            channel=channel,
            ts=self.next_ts(),
            text=text[:MAX_TEXT],
            blocks=blocks,
            metadata=metadata,
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and truthy(args.get("reply_broadcast")),
            visible_at=time.monotonic() + self.visibility_delay,
        )
        if thread_ts is not None:
            root = self.find(channel, thread_ts)
            root.thread_ts = root.ts
        self._messages.setdefault(channel, {})[msg.ts] = msg
        return msg

    def update(self, args: dict[str, Any]) -> StoredMessage:
        """chat.update wants the channel id postMessage returned, not a name."""
        channel = args.get("channel")
        if not isinstance(channel, str) or channel not in self._messages:
            raise SlackError("channel_not_found")
        msg = self.find(channel, args.get("ts"))
        text = args.get("text")
        if text is not None and len(str(text)) > MAX_TEXT:
            raise SlackError("msg_too_long")
        blocks = validate_blocks(args.get("blocks")) if "blocks" in args else msg.blocks
        metadata = validate_metadata(args.get("metadata")) if "metadata" in args else msg.metadata
        msg.versions.append({"text": msg.text, "blocks": msg.blocks, "metadata": msg.metadata})
        if text is not None:
            msg.text = str(text)
        msg.blocks, msg.metadata = blocks, metadata
        msg.edited_ts = self.next_ts()
        return msg

    def post_ephemeral(self, args: dict[str, Any]) -> Ephemeral:
        channel = self.resolve(args.get("channel"))
        user = args.get("user")
        if not isinstance(user, str) or not user:
            raise SlackError("user_not_found")
        text = str(args.get("text") or "")
        blocks = validate_blocks(args.get("blocks"))
        if not text and not blocks:
            raise SlackError("no_text")
        ephemeral = Ephemeral(
            channel, user, text, blocks, args.get("thread_ts") or None, self.next_ts()
        )
        self.ephemerals.append(ephemeral)
        return ephemeral

    def history(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Newest first; thread replies only when broadcast, as Slack does."""
        channel = self.resolve(args.get("channel"))
        with_metadata = truthy(args.get("include_all_metadata"))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        limit = int(args.get("limit") or 100)
        shown = [
            m
            for m in reversed(self.channel_messages(channel))
            if (not m.is_reply or m.reply_broadcast)
            and oldest <= float(m.ts) <= latest
            and _visible(m)
        ]
        return [
            m.to_api(with_metadata=with_metadata, reply_count=len(self.replies_of(channel, m.ts)))
            for m in shown[:limit]
        ]

    def replies(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        channel = self.resolve(args.get("channel"))
        try:
            root = self.find(channel, args.get("ts"))
        except SlackError:
            raise SlackError("thread_not_found") from None
        root_ts = root.thread_ts or root.ts
        root = self.find(channel, root_ts)
        if not _visible(root):
            raise SlackError("thread_not_found")
        with_metadata = truthy(args.get("include_all_metadata"))
        replies = [m for m in self.replies_of(channel, root_ts) if _visible(m)]
        head = root.to_api(with_metadata=with_metadata, reply_count=len(replies))
        return [head] + [m.to_api(with_metadata=with_metadata) for m in replies]

    def new_file(self, filename: Any, length: Any) -> UploadedFile:
        if not isinstance(filename, str) or not filename:
            raise SlackError("invalid_arguments")
        try:
            size = int(length)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        upload = UploadedFile(id=f"F{len(self.files) + 1:010d}", filename=filename, length=size)
        self.files[upload.id] = upload
        return upload

    def complete_files(self, args: dict[str, Any]) -> list[UploadedFile]:
        wanted = decode_json(args.get("files"), error="invalid_arguments")
        if not isinstance(wanted, list) or not wanted:
            raise SlackError("invalid_arguments")
        channel = self.resolve(args["channel_id"]) if args.get("channel_id") else None
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None and (
            channel is None or thread_ts not in self._messages.get(channel, {})
        ):
            raise SlackError("invalid_thread_ts")
        done: list[UploadedFile] = []
        for item in wanted:
            upload = self.files.get(str(item.get("id"))) if isinstance(item, dict) else None
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            done.append(upload)
        for item, upload in zip(wanted, done, strict=True):
            upload.title = item.get("title") or upload.filename
            upload.channel, upload.thread_ts, upload.completed = channel, thread_ts, True
            upload.initial_comment = args.get("initial_comment") or None
        return done

    def add_user(self, user_id: str, name: str, real_name: str | None = None) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name or name,
            "is_bot": False,
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": real_name or name},
        }

    def user_info(self, user_id: Any) -> dict[str, Any]:
        """Registered users, else a stand-in for any well-formed id."""
        if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
            raise SlackError("user_not_found")
        if user_id not in self.users:
            self.add_user(user_id, user_id.lower())
        return self.users[user_id]
