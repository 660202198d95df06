"""The load generator: its own process, ``streams`` concurrent OTLP/gRPC Export calls.

Runs under a ``spawn`` multiprocessing context. One asyncio loop, one gRPC channel (one
HTTP/2 connection, as an SDK exporter has), ``streams`` tasks each keeping one unary
call in flight. Raw bytes go out (no serializer): every body is a pre-encoded template
with fresh ids and times patched in (see ``otlp_payload``; ``mixed_payload`` for the
mixed workload). The parent is told when the measured window opens and closes, so it
can sample other processes' CPU.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
from mixed_payload import workload_templates
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_payload import Template

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class LoadSpec:
    port: int
    streams: int
    spans_per_request: int
    attributes: int
    warmup: float
    duration: float
    workload: str = "raw"  # mixed_payload.WORKLOADS
    templates: int = 64
    seed: int = 1
    call_timeout: float = 30.0


@dataclass
class LoadResult:
    """What the client saw. "window" counts calls that completed inside the measured window."""

    window_seconds: float = 0.0
    window_ok_requests: int = 0
    window_acked_spans: int = 0
    window_latencies: list[float] = field(default_factory=list)  # seconds, OK calls in the window
    window_acked_by_second: list[int] = field(default_factory=list)  # spans acked per second of the window
    total_sent_requests: int = 0
    total_ok_requests: int = 0
    total_acked_spans: int = 0  # every OK call, warm-up and tail included
    rejected_spans: int = 0  # partial_success.rejected_spans reported by the collector
    errors: dict[str, int] = field(default_factory=dict)  # gRPC status name -> calls (whole run)
    acked_counts: dict[str, int] = field(default_factory=dict)  # Template.counts summed over OK calls (whole run)
    cpu_seconds_window: float = 0.0  # this process's CPU time during the window
    bytes_per_span: float = 0.0  # encoded request size / spans, over the templates


def run(spec: LoadSpec, conn: Connection) -> None:
    """Process entry point: sends ("ready",), ("window-start",), ("window-end",), then ("result", LoadResult)."""
    try:
        templates = workload_templates(
            spec.workload, spec.seed, spec.templates, spec.spans_per_request, spec.attributes
        )
        conn.send(("result", asyncio.run(_drive(spec, templates, conn))))
    except BaseException as exc:  # the parent reports it; nothing else would see it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _drive(spec: LoadSpec, templates: list[Template], conn: Connection) -> LoadResult:
    result = LoadResult(window_seconds=spec.duration)
    result.bytes_per_span = sum(len(t.body) for t in templates) / sum(t.span_count for t in templates)
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{spec.port}", options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        export: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            EXPORT_PATH, request_serializer=None, response_deserializer=None
        )  # raw bytes both ways
        conn.send(("ready",))
        began = time.monotonic()
        window_start = began + spec.warmup
        window_end = window_start + spec.duration
        per_second = result.window_acked_by_second = [0] * max(1, math.ceil(spec.duration))

        async def stream(index: int) -> None:
            n = index
            while time.monotonic() < window_end:  # no new call once the window has closed
                template = templates[n % len(templates)]
                body = template.fresh()
                n += spec.streams
                result.total_sent_requests += 1
                sent = time.monotonic()
                try:
                    reply = await export(body, timeout=spec.call_timeout)
                except grpc.aio.AioRpcError as exc:
                    name = exc.code().name
                    result.errors[name] = result.errors.get(name, 0) + 1
                    await asyncio.sleep(0.1)  # a failing collector is not hammered in a tight loop
                    continue
                done = time.monotonic()
                rejected = ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans
                acked = template.span_count - rejected
                result.rejected_spans += rejected
                result.total_ok_requests += 1
                result.total_acked_spans += acked
                for key, count in template.counts.items():  # exact only when nothing was rejected
                    result.acked_counts[key] = result.acked_counts.get(key, 0) + count
                if window_start <= done <= window_end:
                    result.window_ok_requests += 1
                    result.window_acked_spans += acked
                    result.window_latencies.append(done - sent)
                    per_second[min(int(done - window_start), len(per_second) - 1)] += acked

        async def clock() -> None:
            await asyncio.sleep(max(0.0, window_start - time.monotonic()))
            cpu0 = time.process_time()
            conn.send(("window-start",))
            await asyncio.sleep(max(0.0, window_end - time.monotonic()))
            result.cpu_seconds_window = time.process_time() - cpu0
            conn.send(("window-end",))

        # Bounded: streams stop at window_end; a call in flight then ends within call_timeout.
        await asyncio.wait_for(
            asyncio.gather(clock(), *(stream(i) for i in range(spec.streams))),
            timeout=spec.warmup + spec.duration + spec.call_timeout + 10,
        )
    return result
