"""Typed hyperparameters: each SSL method, LNL algorithm and dataset declares its own, once, beside its code.

A declaration is a subclass of ``Hparams`` (a frozen pydantic model that forbids unknown names) whose
fields carry the papers' defaults, their types and their allowed ranges (``Field(ge=..., lt=...)``).
The spec (``study.tuning.spec``) checks every ``hparams``, ``fixed`` and ``search_space`` entry against
these declarations at the door; the methods build their own ``Hparams`` from the same values, so a value
that validates is a value the method accepts. ``describe`` reads a declaration for the docs and ``study plan``.

Checks here are per value: ``check_value(models, name, value)`` returns the value as the method will see
it (an int given for a float becomes a float; a YAML ``1e-3``, which PyYAML reads as a string, becomes
0.001) or raises ``HparamError`` saying what is allowed. Booleans are refused where a number is expected
(``True`` is not a learning rate).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import annotated_types
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo


class Hparams(BaseModel):
    """Base of a hyperparameter declaration; subclass it and add fields with defaults and ranges."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    #: what these hyperparameters belong to, for messages ("LNL algorithm co_teaching")
    owner: ClassVar[str] = ""


class HparamError(ValueError):
    """A hyperparameter name, type or range that its owner does not accept; the message says what is allowed."""


Models = Sequence[type[BaseModel]]


def names(models: Models, exclude: Iterable[str] = ()) -> list[str]:
    """Every declared name across ``models`` (in declaration order), less ``exclude``."""
    skip = set(exclude)
    out: dict[str, None] = {}
    for m in models:
        out.update({n: None for n in m.model_fields if n not in skip})
    return list(out)


def field(models: Models, name: str, exclude: Iterable[str] = (), owner: str = "") -> FieldInfo:
    """The declaration of ``name``; an unknown name raises ``HparamError`` listing the valid ones."""
    if name not in set(exclude):
        for m in reversed(models):  # later models (the method's own) win over shared ones
            if name in m.model_fields:
                return m.model_fields[name]
    of = f" of {owner}" if owner else ""
    raise HparamError(f"{name!r} is not a hyperparameter{of} (allowed: {', '.join(names(models, exclude)) or 'none'})")


def _is_number_type(ann: Any) -> bool:
    args = typing.get_args(ann) or (ann,)
    return any(a in (int, float) for a in args) and bool not in args


def _adapter(info: FieldInfo) -> TypeAdapter[Any]:
    ann: Any = info.annotation
    if info.metadata:
        ann = typing.Annotated[(ann, *info.metadata)]
    return TypeAdapter(ann)


def check_value(models: Models, name: str, value: Any, exclude: Iterable[str] = (), owner: str = "") -> Any:
    """``value`` as the owner of ``name`` accepts it, or ``HparamError`` naming the type and range allowed."""
    info = field(models, name, exclude, owner)
    if isinstance(value, bool) and _is_number_type(info.annotation):
        raise HparamError(f"{name}: {value!r} is a boolean; {describe_field(info)}")
    try:
        return _adapter(info).validate_python(value)
    except ValidationError as e:
        problem = e.errors()[0]["msg"]
        raise HparamError(
            f"{name}: {value!r} is not allowed ({problem[0].lower()}{problem[1:]}); {describe_field(info)}"
        ) from None


def check_values(
    models: Models, values: Mapping[str, Any], exclude: Iterable[str] = (), owner: str = ""
) -> dict[str, Any]:
    """Every entry of ``values`` checked (see ``check_value``); the first problem raises."""
    return {k: check_value(models, k, v, exclude, owner) for k, v in values.items()}


def kind(models: Models, name: str) -> type | None:
    """``int``, ``float``, ``bool`` or ``str`` where the declaration is a plain one of these (Optional
    allowed), else None (lists, literals, unions of several)."""
    ann = field(models, name).annotation
    args = [a for a in (typing.get_args(ann) or (ann,)) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float, bool, str):
        return typing.cast(type, args[0])
    return None


def allowed_text(info: FieldInfo) -> str:
    """``a number, > 0 and < 1`` style text: what the declaration allows."""
    return describe_field(info).removeprefix("must be ")


def describe_field(info: FieldInfo) -> str:
    """``must be a number, > 0 and < 1`` style text for messages."""
    ann = info.annotation
    text = _type_text(ann)
    bounds = []
    for m in info.metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                bounds.append(f"{sym} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            bounds.append(f"at least {m.min_length} items")
    return f"must be {text}" + (f", {' and '.join(bounds)}" if bounds else "")


def _type_text(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, Sequence):
        inner = [a for a in args if a is not Ellipsis]
        item = _type_text(inner[0]) if inner else "values"
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(item, item)
        return f"a list of {plural}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(ann, str(ann))


def bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    """The (low, high) limits of a numeric declaration, ignoring whether they are strict."""
    low = high = None
    for m in info.metadata:
        if isinstance(m, (annotated_types.Gt, annotated_types.Ge)):
            low = float(m.gt if isinstance(m, annotated_types.Gt) else m.ge)  # type: ignore[arg-type]
        if isinstance(m, (annotated_types.Lt, annotated_types.Le)):
            high = float(m.lt if isinstance(m, annotated_types.Lt) else m.le)  # type: ignore[arg-type]
    return low, high


def describe(models: Models, exclude: Iterable[str] = ()) -> list[dict[str, str]]:
    """One row per hyperparameter: name, default, allowed values (for docs tables and ``study plan``)."""
    rows = []
    for n in names(models, exclude):
        info = field(models, n)
        default = "required" if info.is_required() else repr(info.default)
        rows.append(
            {
                "name": n,
                "default": default,
                "allowed": allowed_text(info),
                "doc": info.description or "",
            }
        )
    return rows
