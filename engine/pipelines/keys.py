"""Which keys a pipeline file allows at a given place, read from the schema itself."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from engine.pipelines.schema import Pipeline

# Set by the loader from the step's own key; never written in a file.
_INTERNAL = frozenset({"kind"})


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] (a union with None) from a type."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _kind_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("kind")
    return field.default if field is not None else None


def model_at(
    loc: tuple[int | str, ...], root: type[BaseModel] = Pipeline
) -> type[BaseModel] | None:
    """The model class of the mapping at ``loc`` (pydantic's raw location, with step tags)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if _is_model(tp):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
            continue
        origin = get_origin(tp)
        if origin in (list, typing.List):  # noqa: UP006
            tp = get_args(tp)[0]
        elif origin in (dict, typing.Dict):  # noqa: UP006
            tp = get_args(tp)[1]
        elif origin in (Union, types.UnionType):
            chosen = [m for m in get_args(tp) if _is_model(m) and _kind_of(m) == part]
            if len(chosen) != 1:
                return None
            tp = chosen[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if _is_model(tp) else None


def allowed_keys(loc: tuple[int | str, ...], root: type[BaseModel] = Pipeline) -> list[str] | None:
    """The keys a file may write in the mapping at ``loc``, in the schema's order."""
    model = model_at(loc, root)
    if model is None:
        return None
    return [name for name in model.model_fields if name not in _INTERNAL]
