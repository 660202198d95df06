"""Reading stored spans back as OTLP: the proof that ``spans`` is lossless.

Spans are regrouped by resource and scope, so a request read back equals the one sent
up to the order of groups and spans (and up to empty messages that proto3 cannot tell
from absent ones). Strings are stored escaped where they hold NUL (``nul_escape``) and
unescaped here.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ._anyvalue import json_to_attributes
from .nul_escape import unescape, unescape_value

_U64 = 1 << 64

_SELECT = """
SELECT trace_id, span_id, parent_span_id, trace_state, flags, name, kind,
       start_time_unix_nano, end_time_unix_nano, status_code, status_message,
       attributes::text, dropped_attributes_count, events::text, dropped_events_count,
       links::text, dropped_links_count,
       resource_attributes::text, resource_dropped_attributes_count, resource_schema_url,
       scope_name, scope_version, scope_attributes::text, scope_dropped_attributes_count, scope_schema_url
FROM spans
"""


def read_request(
    conn: psycopg.Connection[Any], where: str = "TRUE", params: tuple[Any, ...] = ()
) -> ExportTraceServiceRequest:
    """Stored spans matching ``where`` (an SQL condition on ``spans``) as one request.

    JSON columns are read as text and parsed here with ``json.loads``, which keeps
    ``1.0`` a float and ``1`` an int, as they were sent.
    """
    request = ExportTraceServiceRequest()
    resources: dict[tuple[str, int, str], ResourceSpans] = {}
    scopes: dict[tuple[tuple[str, int, str], str, str, str, int, str], ScopeSpans] = {}
    rows = conn.execute(_SELECT + " WHERE " + where + " ORDER BY trace_id, span_id", params).fetchall()
    for row in rows:
        (trace_id, span_id, parent, trace_state, flags, name, kind, start, end, status_code, status_message,
         attrs, dropped_attrs, events, dropped_events, links, dropped_links,
         res_attrs, res_dropped, res_url, scope_name, scope_version, scope_attrs, scope_dropped, scope_url) = row  # fmt: skip
        rkey = (res_attrs, res_dropped, res_url)
        rs = resources.get(rkey)
        if rs is None:
            rs = request.resource_spans.add(schema_url=unescape(res_url))
            rs.resource.attributes.extend(json_to_attributes(_loads(res_attrs)))
            rs.resource.dropped_attributes_count = res_dropped
            resources[rkey] = rs
        skey = (rkey, scope_name, scope_version, scope_attrs, scope_dropped, scope_url)
        ss = scopes.get(skey)
        if ss is None:
            ss = rs.scope_spans.add(schema_url=unescape(scope_url))
            ss.scope.name = unescape(scope_name)
            ss.scope.version = unescape(scope_version)
            ss.scope.attributes.extend(json_to_attributes(_loads(scope_attrs)))
            ss.scope.dropped_attributes_count = scope_dropped
            scopes[skey] = ss
        span = ss.spans.add(
            trace_id=bytes(trace_id),
            span_id=bytes(span_id),
            parent_span_id=bytes(parent) if parent is not None else b"",
            trace_state=unescape(trace_state),
            flags=flags,
            name=unescape(name),
            kind=kind,
            start_time_unix_nano=start % _U64,
            end_time_unix_nano=end % _U64,
            dropped_attributes_count=dropped_attrs,
            dropped_events_count=dropped_events,
            dropped_links_count=dropped_links,
        )
        if status_code or status_message:
            span.status.code = status_code
            span.status.message = unescape(status_message)
        span.attributes.extend(json_to_attributes(_loads(attrs)))
        _add_events(span, _loads(events))
        _add_links(span, _loads(links))
    return request


def _loads(text: str) -> Any:
    """A jsonb column's text parsed, its strings unescaped (PostgreSQL writes U+001A as \\u001a)."""
    value = json.loads(text)
    if "\\u001a" in text or "\x1a" in text:
        return unescape_value(value)
    return value


def _add_events(span: Span, events: list[dict[str, Any]]) -> None:
    for item in events:
        event = span.events.add(time_unix_nano=item["time_unix_nano"], name=item["name"])
        event.attributes.extend(json_to_attributes(item.get("attributes", {})))
        event.dropped_attributes_count = item.get("dropped_attributes_count", 0)


def _add_links(span: Span, links: list[dict[str, Any]]) -> None:
    for item in links:
        link = span.links.add(
            trace_id=bytes.fromhex(item["trace_id"]),
            span_id=bytes.fromhex(item["span_id"]),
            trace_state=item.get("trace_state", ""),
            flags=item.get("flags", 0),
        )
        link.attributes.extend(json_to_attributes(item.get("attributes", {})))
        link.dropped_attributes_count = item.get("dropped_attributes_count", 0)
