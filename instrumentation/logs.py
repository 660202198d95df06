"""Joining logs and traces: trace id, span id, session and node on every log record.

``logging.getLogger().addFilter(TraceContextFilter())`` (or on a handler) gives records
``trace_id``, ``span_id``, ``session_id`` and ``node_id`` attributes (empty strings
outside a span or flow), for format strings such as
``"%(asctime)s %(trace_id)s %(session_id)s %(message)s"``. For structlog, put
:func:`add_trace_context` in the processor chain.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace

from .flow import current_flow


def _context() -> dict[str, str]:
    try:
        ctx = trace.get_current_span().get_span_context()
        flow = current_flow()
        return {
            "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else "",
            "span_id": format(ctx.span_id, "016x") if ctx.is_valid else "",
            "session_id": flow.session_id or "",
            "node_id": flow.node_id or "",
        }
    except Exception:  # logging must go on whatever happens here
        return {"trace_id": "", "span_id": "", "session_id": "", "node_id": ""}


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id``, ``span_id``, ``session_id`` and ``node_id`` to each record; filters nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context().items():
            setattr(record, key, value)
        return True


def add_trace_context(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor adding the same four keys (only those that are set)."""
    for key, value in _context().items():
        if value:
            event_dict.setdefault(key, value)
    return event_dict
