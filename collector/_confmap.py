"""Turning a parsed YAML mapping into frozen config dataclasses, with key paths in errors.

The rules match the OTel Collector's confmap: unknown keys are errors, durations are Go
style strings (``200ms``, ``5s``, ``1m30s``), and ``${env:NAME}`` /
``${env:NAME:-default}`` are expanded once, at load, before any component sees a value.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def expand_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Expand ``${env:NAME}`` and ``${env:NAME:-default}`` in every string of ``value``.

    A string that is one reference and nothing else is parsed again as YAML, so
    ``${env:PORT}`` can yield an integer, as in the Collector. ``$$`` is a literal ``$``.
    """
    if isinstance(value, dict):
        return {k: expand_env(v, env, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group(3) is not None:
            raise ConfigError(
                f"{path}: unsupported reference ${{{match.group(3)}}}; use ${{env:NAME}} or ${{env:NAME:-default}}"
            )
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {name} is not set (give a default with ${{env:{name}:-value}})"
        )

    whole = _ENV_REF.fullmatch(value)
    expanded = _ENV_REF.sub(replace, value)
    if whole is not None and whole.group(1) is not None and expanded != "":
        try:
            parsed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        # only to type numbers, booleans and the like: a string stays verbatim (YAML would
        # cut it at " #" or strip its quotes, e.g. in a DSN's password)
        return expanded if isinstance(parsed, str) else parsed
    return expanded


def parse_duration(value: Any, path: str) -> timedelta:
    """A Go-style duration (``"1m30s"``, ``"200ms"``) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a duration like '200ms' or '5s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{path}: must not be negative, got {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return timedelta(0)
        pos, seconds = 0, 0.0
        for part in _DURATION_PART.finditer(text):
            if part.start() != pos:
                break
            seconds += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
            pos = part.end()
        if pos == len(text) and text:
            return timedelta(seconds=seconds)
    raise ConfigError(f"{path}: expected a duration like '200ms' or '5s', got {value!r}")


def build(cls: type[T], data: Any, path: str) -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {_kind(data)}")
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key (valid keys: {', '.join(sorted(fields)) or 'none'})")
    kwargs = {name: convert(hints[name], data[name], _join(path, name)) for name in fields if name in data}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def convert(tp: Any, value: Any, path: str) -> Any:
    """Convert one value to the annotated type ``tp``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):  # `grpc:` alone: on, with defaults
                return build(args[0], None, path)
            return None
        return convert(args[0], value, path)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(typing.cast(type, tp), value, path)
    if tp is timedelta:
        return parse_duration(value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {_kind(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {_kind(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {_kind(value)}")
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_kind(value)}")
        (item,) = get_args(tp)[:1]
        return tuple(convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_kind(value)}")
        return dict(value)
    raise TypeError(f"config type {tp!r} at {path} is not supported")  # a bug in a config class


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
