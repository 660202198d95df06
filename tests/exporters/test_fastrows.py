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
    module = encoder._fastrows  # noqa: SLF001
    assert module is not None, "the C encoder was not built by the install"
    return module


def test_fastrows_is_built_and_used() -> None:
    """Every install builds the extension, and encode_request goes through it."""
    module = compiled()
    payload = make_request(make_span()).SerializeToString()
    assert encoder.encode_request(payload).data == module.encode(payload)[0]  # type: ignore[attr-defined]


def _with_nuls(request: ExportTraceServiceRequest, where: int) -> ExportTraceServiceRequest:
    """Plant a NUL in one of several places of the first span, as a sender might."""
    span = request.resource_spans[0].scope_spans[0].spans[0]
    if where == 1:
        span.name += "\x00"
    elif where == 2:
        span.attributes.append(KeyValue(key="k", value=AnyValue(string_value="a\x00")))
    elif where == 3:
        span.events.add(name="\x00")
    elif where == 4:
        request.resource_spans[0].schema_url = "x\x00"
    elif where == 5:
        request.resource_spans[0].scope_spans[0].scope.version = "\x00"
    elif where == 6:
        span.links.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, trace_state="\x00")
    return request


@settings(max_examples=300, deadline=None)
@given(request=requests(), nul=st.integers(0, 6))
def test_fastrows_equals_python_reference(request: ExportTraceServiceRequest, nul: int) -> None:
    """Same COPY bytes, same row count, same refusals as build_rows + psycopg's formatter."""
    payload = _with_nuls(request, nul).SerializeToString()
    reference = encoder.encode_request_python(payload)
    data, rows, rejected, reason, keys = compiled().encode(payload)  # type: ignore[attr-defined]
    assert (rows, rejected) == (reference.rows, reference.rejected)
    assert reason == reference.reason
    assert data == reference.data
    assert keys == reference.keys


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=600))
def test_fastrows_garbage_raises_value_error_or_encodes(garbage: bytes) -> None:
    """Arbitrary bytes never crash the encoder: a ValueError, or a well-formed COPY stream."""
    try:
        data, rows, _, _, _ = compiled().encode(garbage)  # type: ignore[attr-defined]
    except ValueError:
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
