"""Small helpers to send raw OTLP over real sockets, and to build requests by hand."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_post(
    port: int,
    body: bytes,
    content_type: str = "application/x-protobuf",
    headers: dict[str, str] | None = None,
    path: str = "/v1/traces",
) -> HttpReply:
    """POST over a fresh connection to 127.0.0.1 and return the whole reply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        response = conn.getresponse()
        return HttpReply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def grpc_export(
    port: int, body: bytes, compression: grpc.Compression | None = None
) -> tuple[grpc.StatusCode, bytes, str]:
    """Send raw request bytes to TraceService/Export; returns (code, response bytes, details)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(EXPORT_PATH)
        try:
            reply: bytes = export(body, timeout=60, compression=compression)
        except grpc.RpcError as exc:
            return exc.code(), b"", exc.details() or ""  # type: ignore[attr-defined]
        return grpc.StatusCode.OK, reply, ""


def make_span(trace_id: bytes = b"\x01" * 16, span_id: bytes = b"\x02" * 8, name: str = "op", **attrs: Any) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
    )
    for key, value in attrs.items():
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=str(value))))
    return span


def make_request(*spans: Span, service: str = "svc") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    ss.spans.extend(spans)
    return request


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deep_kvlist_request(depth: int) -> bytes:
    """A request whose one span has an attribute nested ``depth`` kvlists deep, built as bytes
    (the protobuf library itself refuses to build it)."""
    value = field_bytes(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        key_value = field_bytes(1, b"k") + field_bytes(2, value)  # KeyValue{key, value}
        kvlist = field_bytes(1, key_value)  # KeyValueList.values
        value = field_bytes(6, kvlist)  # AnyValue.kvlist_value
    attribute = field_bytes(1, b"deep") + field_bytes(2, value)
    span = make_span().SerializeToString() + field_bytes(9, attribute)  # Span.attributes
    scope_spans = field_bytes(2, span)  # ScopeSpans.spans
    resource_spans = field_bytes(2, scope_spans)  # ResourceSpans.scope_spans
    return field_bytes(1, resource_spans)  # ExportTraceServiceRequest.resource_spans
