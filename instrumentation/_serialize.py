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
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 64 * 1024
TRUNCATED = "_tracetables_truncated"


def _fallback(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a raising __repr__ must not reach the caller
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= 1024 else text[:1024] + "…"


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_fallback, check_circular=True)


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
        parts: list[str] = []
        size = 0
        for chunk in _encoder.iterencode(value):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                preview = "".join(parts)[:limit]
                return json.dumps({TRUNCATED: True, "preview": preview}, ensure_ascii=False)
        return "".join(parts)
    except Exception as exc:  # circular references, exotic mappings: keep the trace, lose the value
        _log_once(type(exc).__name__)
        return json.dumps({"_tracetables_error": f"not serializable: {type(exc).__name__}"})


_logged: set[str] = set()


def _log_once(kind: str, log: Callable[..., None] = logger.warning) -> None:
    if kind not in _logged:
        _logged.add(kind)
        log("tracetables instrumentation: a value could not be serialized (%s); recorded a placeholder", kind)
