"""OTLP spans → rows of the ``spans`` table, ready for COPY.

This is the exporter's hot path: one tuple per span, built with as little Python work
as the format allows. Resource and scope JSON are encoded once per group, not per span.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from ._anyvalue import attributes_to_json
from .nul_escape import escape, escape_json
from .roles import classify, facts_of, key_record

# Column order of COPY. JSON columns travel in jsonb's binary input format (a version
# byte, then the UTF-8 text), declared as bytea so psycopg sends the bytes untouched.
COLUMNS: tuple[str, ...] = (
    "trace_id", "span_id", "parent_span_id", "trace_state", "flags", "name", "kind",
    "start_time_unix_nano", "end_time_unix_nano", "start_time", "end_time", "status_code", "status_message",
    "attributes", "dropped_attributes_count", "events", "dropped_events_count",
    "links", "dropped_links_count", "service_name",
    "resource_attributes", "resource_dropped_attributes_count", "resource_schema_url",
    "scope_name", "scope_version", "scope_attributes", "scope_dropped_attributes_count", "scope_schema_url",
)  # fmt: skip
JSON_COLUMNS = frozenset({"attributes", "events", "links", "resource_attributes", "scope_attributes"})
COPY_TYPES: tuple[str, ...] = tuple(
    "bytea" if c in JSON_COLUMNS else t
    for c, t in zip(
        COLUMNS,
        (
            "bytea", "bytea", "bytea", "text", "int8", "text", "int4",
            "int8", "int8", "int8", "int8", "int4", "text",
            "text", "int8", "text", "int8",
            "text", "int8", "text",
            "text", "int8", "text",
            "text", "text", "text", "int8", "text",
        ),
        strict=True,
    )
)  # fmt: skip

# timestamptz's binary wire format is int8 microseconds since 2000-01-01 UTC: sending
# that integer (declared int8) spares building a datetime per span.
_PG_EPOCH_US = 946_684_800_000_000
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

Row = tuple[Any, ...]


@dataclass(slots=True)
class RowSet:
    """Rows for one batch.

    Attributes:
        rows: one tuple per span, in :data:`COLUMNS` order.
        keys: per span, its ids and role (see ``roles.key_record``).
    """

    rows: list[Row] = field(default_factory=list)
    keys: bytearray = field(default_factory=bytearray)


_JSONB_VERSION = b"\x01"
_EMPTY_LIST = _JSONB_VERSION + b"[]"


def build_rows(resource_spans: Sequence[ResourceSpans]) -> RowSet:
    """Turn spans into rows, every string escaped as ``nul_escape`` describes."""
    out = RowSet()
    rows = out.rows
    keys = out.keys
    dumps = _dumps
    for rs in resource_spans:
        resource = rs.resource
        res_attrs = attributes_to_json(resource.attributes)
        service = res_attrs.get("service.name")
        service_name = escape(service) if isinstance(service, str) else None
        res_json = _jsonb(res_attrs)
        res_dropped = resource.dropped_attributes_count
        res_url = escape(rs.schema_url)
        for ss in rs.scope_spans:
            scope = ss.scope
            scope_json = _jsonb(attributes_to_json(scope.attributes))
            scope_name = escape(scope.name)
            scope_version = escape(scope.version)
            scope_dropped = scope.dropped_attributes_count
            scope_url = escape(ss.schema_url)
            for span in ss.spans:
                attrs = dumps(attributes_to_json(span.attributes))
                span_events = span.events
                span_links = span.links
                status = span.status
                status_message = status.message
                name = span.name
                trace_state = span.trace_state
                # Inline scans (no call) for the common case: a string with neither
                # NUL nor the escape character is stored as it is.
                if "\\u0000" in attrs or "\\u001a" in attrs:
                    attrs = escape_json(attrs)
                if "\x00" in name or "\x1a" in name:
                    name = escape(name)
                if "\x00" in trace_state or "\x1a" in trace_state:
                    trace_state = escape(trace_state)
                if "\x00" in status_message or "\x1a" in status_message:
                    status_message = escape(status_message)
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                rows.append(
                    (
                        span.trace_id,
                        span.span_id,
                        span.parent_span_id or None,
                        trace_state,
                        span.flags,
                        name,
                        span.kind,
                        start - _U64 if start > _I64_MAX else start,
                        end - _U64 if end > _I64_MAX else end,
                        start // 1000 - _PG_EPOCH_US if 0 < start <= _I64_MAX else None,
                        end // 1000 - _PG_EPOCH_US if 0 < end <= _I64_MAX else None,
                        status.code,
                        status_message,
                        _JSONB_VERSION + attrs.encode(),
                        span.dropped_attributes_count,
                        _jsonb(_events(span_events)) if span_events else _EMPTY_LIST,
                        span.dropped_events_count,
                        _jsonb(_links(span_links)) if span_links else _EMPTY_LIST,
                        span.dropped_links_count,
                        service_name,
                        res_json,
                        res_dropped,
                        res_url,
                        scope_name,
                        scope_version,
                        scope_json,
                        scope_dropped,
                        scope_url,
                    )
                )
                role = classify(facts_of(span.kind, span.parent_span_id, span.flags, span.attributes))
                keys += key_record(span.trace_id, span.span_id, role)
    return out


def _jsonb(value: Any) -> bytes:
    """A JSON value in jsonb's binary input form, its strings escaped."""
    return _JSONB_VERSION + escape_json(_dumps(value)).encode()


def _events(events: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        item: dict[str, Any] = {"time_unix_nano": event.time_unix_nano, "name": event.name}
        if event.attributes:
            item["attributes"] = attributes_to_json(event.attributes)
        if event.dropped_attributes_count:
            item["dropped_attributes_count"] = event.dropped_attributes_count
        out.append(item)
    return out


def _links(links: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for link in links:
        item: dict[str, Any] = {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
        if link.trace_state:
            item["trace_state"] = link.trace_state
        if link.attributes:
            item["attributes"] = attributes_to_json(link.attributes)
        if link.dropped_attributes_count:
            item["dropped_attributes_count"] = link.dropped_attributes_count
        if link.flags:
            item["flags"] = link.flags
        out.append(item)
    return out
