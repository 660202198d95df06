"""Faults of the telemetry path never reach the instrumented code: collector down, or stalled."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tracetables.instrumentation import call, run, step


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stalled_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def instrumented_work(provider: TracerProvider, results: list[int]) -> None:
    @step("compute", "script", state_before=lambda: {"n": len(results)}, tracer_provider=provider)
    def compute(x: int) -> int:
        return x + 1

    with run("job", session_id="s-fault", tracer_provider=provider):
        for i in range(3000):
            results.append(compute(i))
        with call("POST /hook", key="fault", tracer_provider=provider) as c:
            c.response({"ok": True}, 200)


@pytest.mark.parametrize("target", ["down", "stalled"])
def test_collector_fault_never_reaches_the_caller(target: str, request: pytest.FixtureRequest) -> None:
    """3,000 instrumented calls return their results, unblocked, while the collector is down or hung."""
    port = closed_port() if target == "down" else request.getfixturevalue("stalled_server")
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter, max_queue_size=256, max_export_batch_size=64, schedule_delay_millis=50)
    provider.add_span_processor(processor)
    results: list[int] = []
    worker = threading.Thread(target=instrumented_work, args=(provider, results))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "instrumented code was blocked by the telemetry path"
    assert results == [i + 1 for i in range(3000)]
    shutdown = threading.Thread(target=provider.shutdown, daemon=True)  # may wait out the exporter's timeout
    shutdown.start()
    shutdown.join(timeout=60)
