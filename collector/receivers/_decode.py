"""Decoding and checking OTLP trace requests, shared by the gRPC and HTTP receivers.

A malformed request (not protobuf, not OTLP/JSON, invalid UTF-8) is refused whole. A
well-formed request may still carry spans the store cannot accept — wrong id lengths,
all-zero ids, absurd attribute counts — and those spans alone are refused, reported to
the client through ``partial_success``; the rest of the request goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ..batch import SpanBatch
from .config import SpanLimits

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


class MalformedRequestError(ValueError):
    """The body is not a valid request; the message is safe to send to the client."""


@dataclass(slots=True)
class DecodedRequest:
    """A request's acceptable spans, and what was refused.

    Attributes:
        batch: the spans to store (invalid ones removed).
        rejected_spans: how many spans were refused.
        message: why the first refused span was refused.
    """

    batch: SpanBatch
    rejected_spans: int = 0
    message: str = ""


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse a binary ``ExportTraceServiceRequest``.

    Raises:
        MalformedRequestError: truncated or invalid protobuf, invalid UTF-8 in a
            string field, or nesting deeper than protobuf's recursion limit.
    """
    try:
        return ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise MalformedRequestError(f"invalid OTLP protobuf: {_short(exc)}") from exc


def check_request(request: ExportTraceServiceRequest, limits: SpanLimits) -> DecodedRequest:
    """Remove the spans that cannot be stored and count them; see the module docstring."""
    accepted = 0
    rejected = 0
    message = ""
    for rs_index, rs in enumerate(request.resource_spans):
        group_problem = _attributes_problem("the resource", len(rs.resource.attributes), limits)
        for ss_index, ss in enumerate(rs.scope_spans):
            spans = ss.spans
            problem = group_problem or _attributes_problem("the scope", len(ss.scope.attributes), limits)
            if problem is not None and len(spans):
                # A group's resource or scope is shared by its spans: they go together.
                rejected += len(spans)
                if not message:
                    message = f"resource_spans[{rs_index}].scope_spans[{ss_index}]: {problem}"
                del spans[:]
                continue
            bad: list[int] | None = None
            for i, span in enumerate(spans):
                problem = _span_problem(span, limits)
                if problem is None:
                    continue
                if bad is None:
                    bad = []
                bad.append(i)
                if not message:
                    message = f"resource_spans[{rs_index}].scope_spans[{ss_index}].spans[{i}]: {problem}"
            if bad is not None:
                rejected += len(bad)
                for i in reversed(bad):
                    del spans[i]
            accepted += len(spans)
    batch = SpanBatch(list(request.resource_spans), accepted)
    if rejected:
        message = f"{rejected} span(s) rejected; first: {message}"
    return DecodedRequest(batch, rejected, message)


def _attributes_problem(owner: str, count: int, limits: SpanLimits) -> str | None:
    if count > limits.max_attributes:
        return f"{owner} has {count} attributes, over the limit of {limits.max_attributes}"
    return None


def _span_problem(span: Span, limits: SpanLimits) -> str | None:
    trace_id = span.trace_id
    span_id = span.span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return f"trace_id must be 16 bytes, not all zero (got {len(trace_id)} bytes)"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return f"span_id must be 8 bytes, not all zero (got {len(span_id)} bytes)"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return f"parent_span_id must be empty or 8 bytes (got {len(parent)} bytes)"
    if len(span.attributes) > limits.max_attributes:
        return f"{len(span.attributes)} attributes, over the limit of {limits.max_attributes}"
    if span.events:
        if len(span.events) > limits.max_events:
            return f"{len(span.events)} events, over the limit of {limits.max_events}"
        for event in span.events:
            if len(event.attributes) > limits.max_attributes:
                return f"an event has {len(event.attributes)} attributes, over the limit of {limits.max_attributes}"
    if span.links:
        if len(span.links) > limits.max_links:
            return f"{len(span.links)} links, over the limit of {limits.max_links}"
        for link in span.links:
            if len(link.trace_id) != 16 or len(link.span_id) != 8:
                return "a link's trace_id must be 16 bytes and span_id 8 bytes"
            if len(link.attributes) > limits.max_attributes:
                return f"a link has {len(link.attributes)} attributes, over the limit of {limits.max_attributes}"
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("\n", 1)[0][:200]
