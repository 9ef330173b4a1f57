"""What is wrong with a pipeline file, in plain words.

Pure functions: pydantic's error records (type, location, context) become
sentences that name the place in the file ("step 1 (Build)"), what is wrong and
what is valid. The loader adds the file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.pipelines.keys import allowed_keys
from engine.pipelines.schema import IDENTIFIER, PIPELINE_NAME, SLACK_ID

Loc = tuple[int | str, ...]

# Step kinds pydantic puts in a location after a step's index ('steps', 0, 'run', ...).
STEP_TAGS = frozenset({"run", "approval", "jenkins", "parallel"})

_PATTERNS = {
    PIPELINE_NAME: "may hold only letters, digits, '-' and '_', and starts with a letter or digit",
    SLACK_ID: "must be a Slack id such as U0123ABCD or C0123ABCD (capital letters and digits)",
    IDENTIFIER: "must be a name of letters, digits and '_' that does not start with a digit",
    r"^[^/]+(/[^/]+)*$": "must be a Jenkins job name, with folders as a/b/c",
}

_ITEMS = {"steps": "step", "parallel": "step", "approvers": "approver", "choices": "choice"}

_FIXED = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list, e.g. [a, b]",
    "dict_type": "must be a mapping of keys to values (key: value)",
    "model_type": "must be a mapping of keys to values (key: value)",
    "model_attributes_type": "must be a mapping of keys to values (key: value)",
    "url_type": "must be a URL",
    "url_parsing": "must be a URL",
    "union_tag_invalid": "must be a step: one of run, parallel, approval, jenkins",
    "union_tag_not_found": "must be a step: one of run, parallel, approval, jenkins",
}

_NOT_A_MAPPING = frozenset({"dict_type", "model_type", "model_attributes_type"})


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most like ``word`` (a typo's intended spelling), if any is close."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def clean_loc(raw: Sequence[int | str]) -> Loc:
    """Drop pydantic's step-kind tags: ('steps', 0, 'run', 'x') -> ('steps', 0, 'x')."""
    return tuple(
        p
        for i, p in enumerate(raw)
        if not (p in STEP_TAGS and i > 0 and isinstance(raw[i - 1], int))
    )


def _step_label(number: str, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"step {number} ({name})" if isinstance(name, str) and name else f"step {number}"


def _item(data: Any, key: int | str) -> Any:
    if isinstance(data, dict):
        return data.get(key)
    if isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


def split_place(loc: Loc, data: Any) -> tuple[str, Loc]:
    """Where in the file ``loc`` is, in words, and the key path left inside that place.

    ('steps', 0, 'timeout') with step 0 named Build -> ("step 1 (Build)", ('timeout',)).
    """
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = _item(_item(data, "steps"), loc[1])
        rest = loc[2:]
        if len(rest) >= 2 and rest[0] == "parallel" and isinstance(rest[1], int):
            inner = _item(_item(step, "parallel"), rest[1])
            label = _step_label(f"{loc[1] + 1}", step)
            return f"{label}, parallel step {rest[1] + 1}" + _name_suffix(inner), rest[2:]
        return _step_label(str(loc[1] + 1), step), rest
    if len(loc) >= 2 and loc[0] == "parameters" and isinstance(loc[1], str):
        return f"parameter `{loc[1]}`", loc[2:]
    if len(loc) >= 2 and isinstance(loc[1], int):
        return f"{loc[0]} entry {loc[1] + 1}", loc[2:]
    return "", loc


def _name_suffix(item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f" ({name})" if isinstance(name, str) and name else ""


def _dotted(path: Loc) -> str:
    return ".".join(str(p) for p in path)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_timeout(path: Loc) -> bool:
    return bool(path) and path[-1] == "timeout"


def _timeout_predicate(kind: str, ctx: Mapping[str, Any]) -> str | None:
    if kind in {"float_type", "float_parsing", "int_type", "int_parsing"}:
        return "must be a number of seconds, e.g. 600"
    if kind in {"greater_than", "greater_than_equal"}:
        return "must be a number of seconds more than 0, e.g. 600"
    if kind in {"less_than", "less_than_equal"}:
        limit = ctx.get("le", ctx.get("lt"))
        days = f" ({_num(float(limit) / 86400)} days)" if isinstance(limit, int | float) else ""
        return f"must be at most {_num(limit)} seconds{days}"
    return None


def _too_short(ctx: Mapping[str, Any], path: Loc) -> str:
    item = _ITEMS.get(str(path[-1]) if path else "", "entry")
    size = ctx.get("min_length", 1)
    return f"must list at least one {item}" if size == 1 else f"must list at least {size}"


def _pattern(ctx: Mapping[str, Any]) -> str:
    pattern = str(ctx.get("pattern", ""))
    return _PATTERNS.get(pattern, f"must match the pattern {pattern}")


def _string_too_short(ctx: Mapping[str, Any]) -> str:
    size = ctx.get("min_length", 1)
    return "must not be empty" if size == 1 else f"must be at least {size} characters long"


_BOUNDS = {
    "greater_than": ("more than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}


def predicate(error: Mapping[str, Any], path: Loc) -> str:
    """What a value must be, for one pydantic error at ``path`` (no subject)."""
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    timeout = _timeout_predicate(kind, ctx) if _is_timeout(path) else None
    if timeout is not None:
        return timeout
    if kind in _FIXED:
        return _FIXED[kind]
    by_context: dict[str, Callable[[], str]] = {
        "string_type": lambda: "must be text" + _not_text_hint(error.get("input")),
        "string_pattern_mismatch": lambda: _pattern(ctx),
        "string_too_short": lambda: _string_too_short(ctx),
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters long",
        "too_short": lambda: _too_short(ctx, path),
        "too_long": lambda: f"must list at most {ctx.get('max_length')}",
        "literal_error": lambda: f"must be one of {ctx.get('expected', '')}".rstrip(),
        "enum": lambda: f"must be one of {ctx.get('expected', '')}".rstrip(),
    }
    if kind in by_context:
        return by_context[kind]()
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return f"must be {words} {_num(ctx.get(key))}"
    text = str(error.get("msg", "is not valid"))
    return re.sub(r"^Input should be", "must be", text)


def _not_text_hint(value: Any) -> str:
    if value is None:
        return " (it is empty)"
    if isinstance(value, list):
        return ", not a list"
    if isinstance(value, dict):
        return ", not a mapping"
    return " (put it in quotes)"


def describe(error: Mapping[str, Any], data: Any) -> tuple[Loc, str]:
    """The location (without step-kind tags) and the plain sentence for one pydantic error."""
    raw = tuple(error.get("loc", ()))
    loc = clean_loc(raw)
    place, path = split_place(loc, data)
    kind = str(error.get("type", ""))
    if kind == "extra_forbidden" and path:
        return loc, unknown_key(raw, place, path)
    if kind == "missing" and path:
        where = f"{place}: " if place else ""
        return loc, f"{where}`{_dotted(path)}` is required"
    if kind in {"value_error", "assertion_error"}:
        text = str(error.get("msg", "")).removeprefix("Value error, ")
        text = text.removeprefix("Assertion failed, ")
        return loc, f"{place}: {text}" if place else text
    sentence = predicate(error, path)
    if place.startswith("step") and not path and kind in _NOT_A_MAPPING:
        sentence = "must be a mapping: name:, then one of run:, parallel:, approval:, jenkins:"
    if place and path:
        return loc, f"{place}: {_dotted(path)} {sentence}"
    subject = place or _dotted(path) or "the file"
    return loc, f"{subject} {sentence}"


def unknown_key(raw: Loc, place: str, path: Loc) -> str:
    key = str(path[-1])
    where = place or "the pipeline"
    if len(path) > 1:
        where += f" under `{_dotted(path[:-1])}`"
    allowed = allowed_keys(raw[:-1])
    if allowed is None:
        return f"unknown key `{key}` in {where}"
    guess = closest(key, allowed)
    hint = f"; did you mean `{guess}`?" if guess else ";"
    return f"unknown key `{key}` in {where}{hint} allowed: {', '.join(allowed)}"


def missing_folder(folder: Path) -> str:
    """The one line that names a pipelines folder that is not there."""
    shown = str(folder)
    if not folder.is_absolute():
        shown += f" (that is {folder.absolute()})"
    what = "is not a folder" if folder.exists() else "does not exist"
    return (
        f"pipelines folder {shown} {what}: no pipelines are loaded; "
        "create it or set ANSFLOW_PIPELINES_DIR to the folder of pipeline files"
    )
