"""The compiled OTLP → COPY encoder matches the Python reference byte for byte, and survives garbage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.otlp_strategies import requests
from tests.otlp_wire import deep_kvlist_request, make_request, make_span
from tracetables.exporters.postgres import encoder


def compiled() -> object:
    module = encoder._fastrows
    assert module is not None, "the C encoder was not built by the install"
    return module


def test_fastrows_is_built_and_used() -> None:
    """Every install builds the extension, and encode_request goes through it."""
    module = compiled()
    payload = make_request(make_span()).SerializeToString()
    assert encoder.encode_request(payload).data == module.encode(payload)[0]  # type: ignore[attr-defined]


NUL_TEXTS = ["\x00", "a\x00b", "\x1a", "\x1a0", "x\x1a\x00\x1a\x1a", "\\u0000", "\\\x00", "\x00\x00é"]


def _with_nuls(request: ExportTraceServiceRequest, where: int, text: str) -> ExportTraceServiceRequest:
    """Plant a NUL or escape-character string in one of the places strings live, as a sender might."""
    rs = request.resource_spans[0]
    span = rs.scope_spans[0].spans[0]
    nested = AnyValue()
    nested.kvlist_value.values.add(key=text, value=AnyValue(string_value=text))
    nested.kvlist_value.values.add(key="list").value.array_value.values.add(string_value=text)
    places = [
        lambda: None,
        lambda: setattr(span, "name", span.name + text),
        lambda: span.attributes.append(KeyValue(key="k", value=AnyValue(string_value=text))),
        lambda: span.attributes.append(KeyValue(key=text, value=AnyValue(int_value=1))),
        lambda: span.attributes.append(KeyValue(key="nested", value=nested)),
        lambda: span.events.add(name=text).attributes.append(KeyValue(key=text, value=AnyValue(string_value=text))),
        lambda: setattr(rs, "schema_url", text),
        lambda: setattr(rs.scope_spans[0].scope, "version", text),
        lambda: setattr(rs.scope_spans[0].scope, "name", text),
        lambda: setattr(rs.scope_spans[0], "schema_url", text),
        lambda: span.links.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, trace_state=text),
        lambda: setattr(span, "trace_state", text),
        lambda: setattr(span.status, "message", text),
        lambda: rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=text))),
        lambda: rs.scope_spans[0].scope.attributes.append(KeyValue(key=text, value=AnyValue(string_value=text))),
    ]
    places[where % len(places)]()
    return request


@settings(max_examples=300, deadline=None)
@given(request=requests(), where=st.integers(0, 14), text=st.sampled_from(NUL_TEXTS))
def test_fastrows_equals_python_reference(request: ExportTraceServiceRequest, where: int, text: str) -> None:
    """Same COPY bytes, same row count, same keys as build_rows + psycopg's formatter; no span refused."""
    payload = _with_nuls(request, where, text).SerializeToString()
    reference = encoder.encode_request_python(payload)
    data, rows, keys = compiled().encode(payload)  # type: ignore[attr-defined]
    assert rows == reference.rows == sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert data == reference.data
    assert keys == reference.keys


def test_fastrows_escapes_nul_in_text_and_json_as_documented() -> None:
    """NUL becomes U+001A '0' and U+001A is doubled, in a text column and in jsonb, keys too."""
    span = make_span(name="a\x00b\x1ac")
    span.attributes.append(KeyValue(key="k\x00", value=AnyValue(string_value="\x1a\x00")))
    payload = make_request(span).SerializeToString()
    data, rows, _ = compiled().encode(payload)  # type: ignore[attr-defined]
    assert rows == 1
    assert b"\x00\x00\x00\x07a\x1a0b\x1a\x1ac" in data  # int32 length 7, then the escaped name
    assert b'"k\\u001a0":"\\u001a\\u001a\\u001a0"' in data
    assert b"\\u0000" not in data


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=600))
def test_fastrows_garbage_raises_value_error_or_encodes(garbage: bytes) -> None:
    """Arbitrary bytes never crash the encoder: a ValueError, or a well-formed COPY stream."""
    try:
        data, rows, _ = compiled().encode(garbage)  # type: ignore[attr-defined]
    except ValueError as exc:
        assert str(exc) == "malformed OTLP protobuf"  # not an unpacking error hiding a result
        return
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    assert rows >= 0


def test_fastrows_every_truncation_is_safe() -> None:
    """A valid request cut at every length: ValueError or a result, never a crash."""
    payload = make_request(make_span(a="1", b="2"), make_span(span_id=b"\x05" * 8)).SerializeToString()
    for cut in range(len(payload)):
        try:
            compiled().encode(payload[:cut])  # type: ignore[attr-defined]
        except ValueError:
            pass


def test_fastrows_refuses_nesting_deeper_than_protobuf_allows() -> None:
    """Nesting past 100 levels is malformed (upb would not have parsed it either)."""
    try:
        compiled().encode(deep_kvlist_request(10_000))  # type: ignore[attr-defined]
    except ValueError as exc:
        assert "malformed" in str(exc)
    else:
        raise AssertionError("a 10,000-deep kvlist was encoded")
