"""How pipeline outcomes become OTLP answers, for both transports (the OTLP spec's table).

=======================  ===================  =====================  ============
outcome                  gRPC code            HTTP status            retry hint
=======================  ===================  =====================  ============
malformed request        INVALID_ARGUMENT     400                    —
body too large           RESOURCE_EXHAUSTED   413                    —
unknown content type     —                    415                    —
overloaded               RESOURCE_EXHAUSTED   429                    RetryInfo / Retry-After
store unreachable        UNAVAILABLE          503                    RetryInfo / Retry-After
data refused by store    INVALID_ARGUMENT     400                    —
unexpected failure       INTERNAL             500                    —
=======================  ===================  =====================  ============
"""

from __future__ import annotations

import math

from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..consumer import ConsumeResult
from ..errors import OverloadedError, PermanentError, RetryableError


def response_for(result: ConsumeResult, extra_rejected: int, extra_message: str) -> ExportTraceServiceResponse:
    """The success response, with ``partial_success`` when any span was refused."""
    response = ExportTraceServiceResponse()
    rejected = result.rejected_spans + extra_rejected
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = "; ".join(m for m in (extra_message, result.message) if m)
    return response


def classify(exc: BaseException) -> tuple[int, int, float | None]:
    """(google.rpc code, HTTP status, retry-after seconds or None) for a pipeline error."""
    if isinstance(exc, OverloadedError):
        return code_pb2.RESOURCE_EXHAUSTED, 429, exc.retry_after
    if isinstance(exc, RetryableError):
        return code_pb2.UNAVAILABLE, 503, exc.retry_after
    if isinstance(exc, PermanentError):
        return code_pb2.INVALID_ARGUMENT, 400, None
    return code_pb2.INTERNAL, 500, None


def status_message(code: int, message: str, retry_after: float | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status``, with a ``RetryInfo`` detail when a delay is given."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo(
            retry_delay=Duration(seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9))
        )
        status.details.add().Pack(info)
    return status


def retry_after_header(seconds: float) -> str:
    """HTTP ``Retry-After`` takes whole seconds."""
    return str(max(1, math.ceil(seconds)))
