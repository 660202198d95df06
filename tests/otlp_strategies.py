"""Hypothesis strategies for OTLP trace requests, and a canonical form to compare them."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
# Any Unicode text, with NUL, the store's escape character U+001A (nul_escape.py), "0"
# and backslashes drawn often: the characters its escaping and JSON's could confuse.
_CHAR = st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\x00", "\x1a", "0", "\\"])
TEXT = st.text(_CHAR, max_size=12)
KEY = st.text(_CHAR, min_size=0, max_size=8)

SCALARS = st.one_of(
    TEXT.map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
    st.just(AnyValue(double_value=math.nan)),
    st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)


def _array(values: list[AnyValue]) -> AnyValue:
    out = AnyValue()
    out.array_value.SetInParent()
    out.array_value.values.extend(values)
    return out


def _kvlist(pairs: list[KeyValue]) -> AnyValue:
    out = AnyValue()
    out.kvlist_value.SetInParent()
    out.kvlist_value.values.extend(pairs)
    return out


def _key_values(values: st.SearchStrategy[AnyValue], max_size: int = 4) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(
        st.tuples(KEY | st.sampled_from(["@bytes", "@double", "@kvlist", "@x"]), values),
        max_size=max_size,
        unique_by=lambda kv: kv[0],
    ).map(lambda kvs: [KeyValue(key=k, value=v) for k, v in kvs])


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(_array), _key_values(inner, 3).map(_kvlist)),
    max_leaves=8,
)
ATTRIBUTES = _key_values(VALUES)
TRACE_ID = st.binary(min_size=16, max_size=16).filter(any)
SPAN_ID = st.binary(min_size=8, max_size=8).filter(any)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(TRACE_ID),
        span_id=draw(SPAN_ID),
        parent_span_id=draw(st.just(b"") | SPAN_ID),
        trace_state=draw(TEXT),
        flags=draw(U32),
        name=draw(TEXT),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=draw(U64),
        end_time_unix_nano=draw(U64),
        dropped_attributes_count=draw(U32),
        dropped_events_count=draw(U32),
        dropped_links_count=draw(U32),
    )
    span.attributes.extend(draw(ATTRIBUTES))
    code, message = draw(st.integers(0, 2)), draw(TEXT)
    if code or message:
        span.status.code = code  # type: ignore[assignment]
        span.status.message = message
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(time_unix_nano=draw(U64), name=draw(TEXT), dropped_attributes_count=draw(U32))
        event.attributes.extend(draw(ATTRIBUTES))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(
            trace_id=draw(TRACE_ID),
            span_id=draw(SPAN_ID),
            trace_state=draw(TEXT),
            flags=draw(U32),
            dropped_attributes_count=draw(U32),
        )
        link.attributes.extend(draw(ATTRIBUTES))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """Requests whose spans all have distinct (trace_id, span_id) keys."""
    request = ExportTraceServiceRequest()
    seen: set[tuple[bytes, bytes]] = set()
    for _ in range(draw(st.integers(1, 3))):
        rs = request.resource_spans.add(schema_url=draw(TEXT))
        rs.resource.attributes.extend(draw(ATTRIBUTES))
        rs.resource.dropped_attributes_count = draw(U32)
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add(schema_url=draw(TEXT))
            ss.scope.name = draw(TEXT)
            ss.scope.version = draw(TEXT)
            ss.scope.attributes.extend(draw(ATTRIBUTES))
            ss.scope.dropped_attributes_count = draw(U32)
            for span in draw(st.lists(spans(), min_size=1, max_size=3)):
                key = (span.trace_id, span.span_id)
                if key not in seen:
                    seen.add(key)
                    ss.spans.append(span)
    return request


def _sort_attributes(attributes: Any) -> None:
    """Attributes are a map in OTLP (and a jsonb object in the store): order is not data."""
    for kv in attributes:
        _sort_value(kv.value)
    ordered = sorted(attributes, key=lambda kv: kv.key)
    copies = [KeyValue(key=kv.key, value=kv.value) for kv in ordered]
    del attributes[:]
    attributes.extend(copies)


def _sort_value(value: AnyValue) -> None:
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        _sort_attributes(value.kvlist_value.values)
    elif kind == "array_value":
        for item in value.array_value.values:
            _sort_value(item)


def canonical(request: ExportTraceServiceRequest) -> list[tuple[bytes, int, str, bytes, bytes]]:
    """Order-free form: one (resource, schema_url, scope, span) entry per span, serialized.

    Attribute order is dropped (OTLP attributes are a map), and empty sub-messages are
    cleared: proto3 cannot tell them from absent ones.
    """
    request = ExportTraceServiceRequest.FromString(request.SerializeToString())
    for rs in request.resource_spans:
        _sort_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            _sort_attributes(ss.scope.attributes)
            for span in ss.spans:
                _sort_attributes(span.attributes)
                for event in span.events:
                    _sort_attributes(event.attributes)
                for link in span.links:
                    _sort_attributes(link.attributes)
    out = []
    for rs in request.resource_spans:
        resource = rs.resource.SerializeToString(deterministic=True)
        for ss in rs.scope_spans:
            scope = ss.scope.SerializeToString(deterministic=True) + ss.schema_url.encode()
            for span in ss.spans:
                copy = Span()
                copy.CopyFrom(span)
                if copy.status.ByteSize() == 0:
                    copy.ClearField("status")
                out.append((resource, 0, rs.schema_url, scope, copy.SerializeToString(deterministic=True)))
    return sorted(out)
