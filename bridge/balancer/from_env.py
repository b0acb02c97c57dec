"""The balancer's settings from `BALANCER_<FIELD>` strings: shared by the
service's configuration and the benchmark, so both read them alike. Pure: it
reads the mapping it is given."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "BALANCER_"


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def config_values_from_env(config_cls: type, environ: Mapping[str, str],
                           skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of `config_cls` (a dataclass) set in `environ`, converted to
    their types; an empty value counts as unset. ValueError names the variable."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolvable annotations: fall back on the defaults' types
        hints = {}
    skipped = set(skip)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        key = env_name(f.name)
        if f.name in skipped or key not in environ:
            continue
        raw = str(environ[key]).strip()
        kind = hints.get(f.name) or (type(f.default) if f.default is not dataclasses.MISSING else str)
        value = _convert(key, raw, kind)
        if value is not _UNSET:
            values[f.name] = value
    return values


_UNSET = object()


def _convert(key: str, raw: str, kind: Any) -> Any:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if raw == "" or raw.lower() == "none":
            if type(None) in args:
                return None
        kinds = [a for a in args if a is not type(None)]
        kind = kinds[0] if len(kinds) == 1 else str
    if raw == "":
        return _UNSET
    if typing.get_origin(kind) is typing.Literal:
        if raw not in [str(a) for a in typing.get_args(kind)]:
            raise ValueError(f"{key}={raw!r}: expected one of {', '.join(map(str, typing.get_args(kind)))}")
        return raw
    if kind is float and raw.lower().lstrip("+-") == "nan":
        # As the settings say it (bridge.config): `nan` passes no range check, and is no number at all.
        raise ValueError(f"{key}={raw!r}: not a number")
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            number = float(raw)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError
            return number
    except ValueError:
        raise ValueError(f"{key}={raw!r}: expected {getattr(kind, '__name__', kind)}") from None
    return raw
