"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import grpc
from google.rpc import code_pb2

from ..consumer import Consumer
from ._decode import MalformedRequestError, check_request, decode_protobuf
from ._observe import RequestObserver, reason_for
from ._status import classify, response_for, status_message
from .config import MIB, GrpcConfig, SpanLimits

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

_GRPC_CODES: dict[int, grpc.StatusCode] = {
    code_pb2.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    code_pb2.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    code_pb2.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    code_pb2.INTERNAL: grpc.StatusCode.INTERNAL,
}


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


def server_options(config: GrpcConfig) -> list[tuple[str, int]]:
    """The grpcio channel arguments of ``config`` (sizes, streams, keep-alive, handshake)."""
    options = [
        ("grpc.max_receive_message_length", config.max_recv_msg_size_mib * MIB),
        ("grpc.so_reuseport", 0),
    ]
    if config.max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", config.max_concurrent_streams))
    if config.handshake_timeout:
        options.append(("grpc.server_handshake_timeout_ms", _ms(config.handshake_timeout)))
    params, policy = config.keepalive.server_parameters, config.keepalive.enforcement_policy
    for name, value in (
        ("grpc.max_connection_idle_ms", params.max_connection_idle),
        ("grpc.max_connection_age_ms", params.max_connection_age),
        ("grpc.max_connection_age_grace_ms", params.max_connection_age_grace),
    ):
        if value:  # 0 is gRPC's "never", its own default
            options.append((name, _ms(value)))
    options += [
        ("grpc.keepalive_time_ms", _ms(params.time)),
        ("grpc.keepalive_timeout_ms", _ms(params.timeout)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(policy.min_time)),
        ("grpc.keepalive_permit_without_calls", int(policy.permit_without_stream)),
    ]
    return options


class OtlpGrpcReceiver:
    """Serves OTLP/gRPC on ``config.endpoint``; gzip is handled by gRPC itself.

    The request size limit is gRPC's ``max_receive_message_length``, which applies to
    the message after decompression.
    """

    def __init__(self, config: GrpcConfig, limits: SpanLimits, consumer: Consumer, receiver_id: str = "otlp") -> None:
        self._config = config
        self.observer = RequestObserver(receiver_id, "grpc")
        self._limits = limits
        self._consumer = consumer
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve. Raises ``RuntimeError`` if the endpoint cannot be bound."""
        server = grpc.aio.server(options=server_options(self._config))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)},  # raw bytes in and out
        )
        server.add_generic_rpc_handlers((handler,))
        tls = self._config.tls
        if tls is None:
            self.port = server.add_insecure_port(self._config.endpoint)
        else:
            self.port = server.add_secure_port(self._config.endpoint, tls.grpc_credentials("grpc.tls"))
        if not self.port:
            raise RuntimeError(f"cannot bind OTLP/gRPC to {self._config.endpoint}")
        await server.start()
        self._server = server
        logger.info("OTLP/gRPC receiver listening on %s (port %d)", self._config.endpoint, self.port)

    async def _export(self, body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        # Oversized messages never get here: gRPC refuses them before the handler runs.
        started = time.perf_counter()
        spans = 0
        limits_rejected = 0
        try:
            # Refused by time before any decoding: under overload most requests are.
            self._consumer.admit(0)
            decoded = check_request(decode_protobuf(body), self._limits)
            spans = decoded.batch.span_count
            limits_rejected = decoded.rejected_spans
            result = await self._consumer.consume(decoded.batch)
        except MalformedRequestError as exc:
            self.observer.done(started, len(body), outcome="malformed")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # the pipeline's errors become gRPC statuses here, and only here
            code, _, retry_after = classify(exc)
            if code == code_pb2.INTERNAL:
                logger.exception("unexpected failure exporting %d spans", spans)
            self.observer.done(
                started, len(body), outcome=reason_for(exc), refused=spans, limits_rejected=limits_rejected
            )
            message = str(exc) or type(exc).__name__
            status = status_message(code, message, retry_after)
            await context.abort(
                _GRPC_CODES[code], message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
            )
        self.observer.done(
            started,
            len(body),
            spans=spans - result.rejected_spans,
            limits_rejected=decoded.rejected_spans,
            store_rejected=result.rejected_spans,
        )
        return response_for(result, decoded.rejected_spans, decoded.message).SerializeToString()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls; calls under way get ``grace`` seconds. Safe twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
