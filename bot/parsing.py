"""Parse slash-command text into a command name, positional args and key=value params.

Pure: no Slack, no I/O. Tokenising is shell-like but never expands anything:
`$(id)`, `~`, `;` and globs are ordinary characters.

- Whitespace separates tokens. Double quotes (`"`, U+201C, U+201D, U+201E)
  and single quotes (`'`, U+2018, U+2019) group; Slack clients often turn
  typed quotes into curly ones. A U+2019 where a quote would open is an
  apostrophe (as in don't typed on a Mac) and stays literal.
- Inside double quotes a backslash escapes a double quote or a backslash;
  any other backslash, and every backslash elsewhere, is literal.
- Inside single quotes everything is literal.
- A token is a parameter when its first `=` is outside quotes: `msg="a b"`
  is `msg` → `a b`; a fully quoted `"x=1"` is a positional arg.
- Slack escapes `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`; they are unescaped first.

A change violates this module when a value reaches a caller altered in any
way other than the quoting rules above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["CommandSyntaxError", "ParsedCommand", "parse_command", "split_key_values"]

DOUBLE_QUOTES = frozenset('"\u201c\u201d\u201e')
SINGLE_QUOTES = frozenset("'\u2018\u2019")
_OPENERS = (DOUBLE_QUOTES | SINGLE_QUOTES) - {"\u2019"}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SLACK_ESCAPES = re.compile(r"&(amp|lt|gt);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">"}


class CommandSyntaxError(ValueError):
    """The command text cannot be parsed; `str(err)` is fit to show the user."""


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    args: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Token:
    text: str
    equals_at: int | None
    """Index in `text` of the first `=` typed outside quotes, if any."""


def unescape_slack(text: str) -> str:
    """Undo Slack's `&amp;` `&lt;` `&gt;` in one pass (`&amp;lt;` → `&lt;`)."""
    return _SLACK_ESCAPES.sub(lambda m: _UNESCAPED[m.group(1)], text)


def parse_command(text: str) -> ParsedCommand:
    """`run deploy env=prod msg="two words"` → name, args and params.

    Empty text is `help`. The command name comes first and is lowercased.
    """
    tokens = _tokenise(unescape_slack(text))
    if not tokens:
        return ParsedCommand(name="help")
    first, rest = tokens[0], tokens[1:]
    if first.equals_at is not None:
        raise CommandSyntaxError(
            f"Start with a command, then key=value parameters: `{first.text}` is a parameter."
        )
    args: list[str] = []
    params: dict[str, str] = {}
    for token in rest:
        if token.equals_at is None:
            args.append(token.text)
        else:
            key, value = token.text[: token.equals_at], token.text[token.equals_at + 1 :]
            _add_param(params, key, value)
    return ParsedCommand(name=first.text.lower(), args=args, params=params)


def split_key_values(tokens: list[str]) -> dict[str, str]:
    """`["env=prod", "msg=two words"]` (already split by a shell) → params."""
    params: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise CommandSyntaxError(f"Expected key=value, got `{token}`.")
        _add_param(params, key, value)
    return params


def _add_param(params: dict[str, str], key: str, value: str) -> None:
    if not key:
        raise CommandSyntaxError(f"`={value}` has no parameter name before the `=`.")
    if not _KEY.fullmatch(key):
        raise CommandSyntaxError(
            f"`{key}` is not a valid parameter name: use letters, digits and _, "
            "not starting with a digit."
        )
    if key in params:
        raise CommandSyntaxError(f"Parameter `{key}` is given more than once.")
    params[key] = value


def _tokenise(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        parts: list[str] = []
        length = 0
        equals_at: int | None = None
        while i < n and not text[i].isspace():
            char = text[i]
            if char in _OPENERS:
                quoted, i = _read_quoted(text, i)
                parts.append(quoted)
                length += len(quoted)
                continue
            if char == "=" and equals_at is None:
                equals_at = length
            parts.append(char)
            length += 1
            i += 1
        tokens.append(_Token("".join(parts), equals_at))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted part opening at `start`; return its content and the index after it."""
    opener = text[start]
    double = opener in DOUBLE_QUOTES
    closers = DOUBLE_QUOTES if double else SINGLE_QUOTES
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char in closers:
            return "".join(out), i + 1
        if double and char == "\\" and i + 1 < len(text):
            following = text[i + 1]
            if following == "\\" or following in DOUBLE_QUOTES:
                out.append(following)
                i += 2
                continue
        out.append(char)
        i += 1
    raise CommandSyntaxError(
        f"The {opener} quote at character {start + 1} is never closed "
        f"(near `{text[max(0, start - 10) : start + 20]}`). Close it or remove it."
    )
