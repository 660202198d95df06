"""JSON for state, details and payloads, that never raises and never grows without bound.

Instrumentation must not hurt the instrumented service: a value that cannot be encoded
falls back to its ``repr`` (or a placeholder when even ``repr`` raises), and a value whose
JSON would pass ``limit`` characters is cut there — encoding stops at the limit, so a
50 MB state costs a bounded amount of memory and time — and replaced by a marker object
that says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 64 * 1024
TRUNCATED = "_tracetables_truncated"


_REPR_LIMIT = 1024


def _fallback(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > _REPR_LIMIT:
        value = bytes(value[:_REPR_LIMIT])  # never the repr of all of a big buffer
    try:
        text = repr(value)
    except Exception:  # a raising __repr__ must not reach the caller
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "…"


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_fallback, check_circular=True)
_SCAN_ITEMS = 2000


_FLAT = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})


def _small(value: Any, budget: int) -> bool:
    """Whether ``value`` surely encodes to about ``budget`` characters or fewer."""
    if type(value) is dict and len(value) <= _SCAN_ITEMS:  # the usual state: a flat mapping
        values = value.values()
        kinds = set(map(type, values))  # loops in C: a Python loop cost a tenth of a step
        if kinds <= _FLAT and set(map(type, value)) <= _STR:
            text = sum(map(len, values)) if kinds <= _STR else sum(len(v) for v in values if type(v) is str)
            return sum(map(len, value)) + text + 34 * len(value) <= budget
    return _small_nested(value, budget)


def _small_nested(value: Any, budget: int) -> bool:
    """Whether ``value`` surely encodes to about ``budget`` characters or fewer.

    Walks at most ``_SCAN_ITEMS`` containers' items; strings and bytes count their length,
    anything else a little. Small values take the C encoder at once; the rest go through
    the incremental encoder, which stops at the limit.
    """
    stack = [value]
    items = 0
    size = 0
    while stack:
        item = stack.pop()
        items += 1
        if items > _SCAN_ITEMS:
            return False
        if isinstance(item, str | bytes):
            size += len(item) + 2
        elif isinstance(item, dict):
            for key, inner in item.items():
                size += len(key) + 4 if isinstance(key, str) else 24
                stack.append(inner)
        elif isinstance(item, list | tuple):
            stack.extend(item)
            size += len(item)
        else:
            size += 24
        if size > budget:
            return False
    return True


def to_json(value: Any, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as JSON text of at most about ``limit`` characters; never raises.

    A callable is called first (lazy state); if it raises, the result records that.
    Over the limit, the result is ``{"_tracetables_truncated": true, "preview": "<the
    first limit characters of the JSON>"}``.
    """
    try:
        if callable(value):
            try:
                value = value()
            except Exception as exc:  # the caller's state function failed: say so, do not raise
                return json.dumps({"_tracetables_error": f"state callable raised {type(exc).__name__}"})
        if _small(value, limit):
            return _encoder.encode(value)  # the C encoder, for the common small state
        parts: list[str] = []
        size = 0
        for chunk in _chunks(value, limit, set()):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                preview = "".join(parts)[:limit]
                return json.dumps({TRUNCATED: True, "preview": preview}, ensure_ascii=False)
        return "".join(parts)
    except Exception as exc:  # circular references, exotic mappings: keep the trace, lose the value
        _log_once(type(exc).__name__)
        return json.dumps({"_tracetables_error": f"not serializable: {type(exc).__name__}"})


def _key(key: Any) -> str:
    """A dict key as JSON writes it (strings, and numbers, booleans and None as text)."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None or isinstance(key, int | float):
        text = _encoder.encode(key)
        return text
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _chunks(value: Any, limit: int, active: set[int]) -> Iterator[str]:
    """The JSON of ``value`` piece by piece, as ``iterencode`` gives it, but bounded.

    A string longer than ``limit`` is encoded from its first ``limit + 1`` characters
    only: the caller stops past ``limit`` anyway, and a 50 MB string is never copied
    whole (``iterencode`` would escape all of it into one piece first). ``active`` holds
    the containers being written, to refuse a cycle as ``json`` does.
    """
    if isinstance(value, str):
        yield _encoder.encode(value if len(value) <= limit else value[: limit + 1])
    elif value is None or isinstance(value, bool | int | float):
        yield _encoder.encode(value)
    elif isinstance(value, dict | list | tuple):
        marker = id(value)
        if marker in active:
            raise ValueError("Circular reference detected")
        active.add(marker)
        if isinstance(value, dict):
            yield "{"
            for i, (key, inner) in enumerate(value.items()):
                yield ("," if i else "") + _encoder.encode(_key(key)) + ":"
                yield from _chunks(inner, limit, active)
            yield "}"
        else:
            yield "["
            for i, inner in enumerate(value):
                if i:
                    yield ","
                yield from _chunks(inner, limit, active)
            yield "]"
        active.discard(marker)
    else:
        yield from _chunks(_fallback(value), limit, active)


_logged: set[str] = set()


def _log_once(kind: str, log: Callable[..., None] = logger.warning) -> None:
    if kind not in _logged:
        _logged.add(kind)
        log("tracetables instrumentation: a value could not be serialized (%s); recorded a placeholder", kind)
