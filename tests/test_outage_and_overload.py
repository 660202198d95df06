"""Store outages and overload: retryable answers with retry hints, and nothing acknowledged is lost."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.collector_harness import BASE_CONFIG, start_collector
from tests.otlp_wire import EXPORT_PATH, grpc_export, http_post, make_request, make_span
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so the test may stop and restart it."""
    base = Path(tempfile.mkdtemp(prefix="tt-outage-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=base / "data", durable=False))
    migrate(server.start())
    try:
        yield server
    finally:
        server.stop()


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM spans").fetchone()
        assert row is not None
        return int(str(row[0]))


def test_store_down_answers_503_and_unavailable_with_retry_hints(own_postgres: EmbeddedPostgres) -> None:
    """With PostgreSQL stopped: HTTP 503 + Retry-After, gRPC UNAVAILABLE + RetryInfo; after restart, 200 again."""
    dsn = own_postgres.dsn
    collector = start_collector(dsn)
    try:
        assert http_post(collector.http_port, make_request(make_span(name="before")).SerializeToString()).status == 200
        own_postgres.stop()

        reply = http_post(collector.http_port, make_request(make_span(span_id=b"\x07" * 8)).SerializeToString())
        assert reply.status == 503
        assert int(reply.headers["retry-after"]) >= 1
        status = status_pb2.Status.FromString(reply.body)
        assert status.code == code_pb2.UNAVAILABLE
        assert "PostgreSQL unavailable" in status.message
        assert "password" not in status.message and "host=" not in status.message

        with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(EXPORT_PATH)(
                    make_request(make_span(span_id=b"\x08" * 8)).SerializeToString(), timeout=30
                )
        error = caught.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        details = dict(error.trailing_metadata())  # type: ignore[attr-defined]
        rich = status_pb2.Status.FromString(details["grpc-status-details-bin"])
        info = error_details_pb2.RetryInfo()
        assert rich.details[0].Unpack(info)
        assert info.retry_delay.seconds >= 1

        assert own_postgres.start() == dsn
        reply = http_post(
            collector.http_port, make_request(make_span(span_id=b"\x09" * 8, name="after")).SerializeToString()
        )
        assert reply.status == 200
        with psycopg.connect(dsn) as conn:
            names = sorted(r[0] for r in conn.execute("SELECT name FROM spans").fetchall())
        assert names == ["after", "before"]
    finally:
        collector.stop()


def test_sdk_exporter_retries_through_a_short_outage(own_postgres: EmbeddedPostgres) -> None:
    """The OTel SDK's HTTP exporter, told to retry, gets its spans stored once PostgreSQL is back."""
    dsn = own_postgres.dsn
    collector = start_collector(dsn)
    try:
        own_postgres.stop()
        restarter = threading.Timer(2.0, own_postgres.start)
        restarter.start()
        provider = TracerProvider(resource=Resource.create({"service.name": "retrying"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url, timeout=20)))
        tracer = provider.get_tracer("t")
        started = time.monotonic()
        with tracer.start_as_current_span("survives-outage"):
            pass
        provider.shutdown()
        restarter.join()
        assert time.monotonic() - started >= 1.0  # it did have to wait for the store
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT name, service_name FROM spans").fetchall()
        assert rows == [("survives-outage", "retrying")]
    finally:
        collector.stop()


OVERLOAD_CONFIG = BASE_CONFIG.replace(
    "batch: {timeout: 20ms}", "pii_masking: {}\n  batch: {timeout: 1ms, send_batch_size: 1, max_queued_spans: 1}"
).replace("processors: [batch]", "processors: [pii_masking, batch]")


def test_full_queue_answers_429_with_retry_after(dsn: str) -> None:
    """While the store is blocked and the queue full, a new request gets 429 + Retry-After at once,
    before any processor works on it; the queued one commits later."""
    collector = start_collector(dsn, OVERLOAD_CONFIG)
    try:
        with psycopg.connect(dsn) as locker:
            locker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # writes now wait
            first: dict[str, int] = {}
            sender = threading.Thread(
                target=lambda: first.update(
                    status=http_post(
                        collector.http_port,
                        make_request(make_span(), make_span(span_id=b"\x03" * 8)).SerializeToString(),
                    ).status
                )
            )
            sender.start()
            deadline = time.monotonic() + 10
            while collector.service.pipelines["traces"]._batcher.queued_spans == 0:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the first request never reached the queue"
                time.sleep(0.01)
            reply = http_post(collector.http_port, make_request(make_span(span_id=b"\x04" * 8)).SerializeToString())
            assert reply.status == 429
            assert int(reply.headers["retry-after"]) >= 1
            assert status_pb2.Status.FromString(reply.body).code == code_pb2.RESOURCE_EXHAUSTED
            code, _, details = grpc_export(
                collector.grpc_port, make_request(make_span(span_id=b"\x05" * 8)).SerializeToString()
            )
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in details
            # Past the mark (an empty queue takes one request whole: 2 spans of 1), any
            # request is refused before it is decoded: even garbage gets 429, not 400.
            garbage = http_post(collector.http_port, b"\xff\xff\xff")
            assert garbage.status == 429
            assert grpc_export(collector.grpc_port, b"\xff\xff\xff")[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
            locker.rollback()
        sender.join(timeout=30)
        assert first == {"status": 200}
        assert count(dsn) == 2
        # The refused requests were refused before the processors ran: under overload most
        # requests are refused, and masking them first starved the accepted ones (bench/overload.py).
        incoming = collector.service.telemetry.processor_incoming.labels("pii_masking")
        assert incoming._value.get() == 2  # the first request's two spans only
    finally:
        collector.stop()


def test_shutdown_drains_queued_batches(dsn: str) -> None:
    """Requests gathered in the batch processor when shutdown starts are committed, not dropped."""
    slow = BASE_CONFIG.replace("batch: {timeout: 20ms}", "batch: {timeout: 60s}").replace(
        "postgres:\n", "postgres:\n    sending_queue: {num_consumers: 1}\n"
    )
    collector = start_collector(dsn, slow)
    batcher = collector.service.pipelines["traces"]._batcher
    assert batcher is not None
    results: list[int] = []

    def send(span_id: bytes) -> threading.Thread:
        body = make_request(make_span(span_id=span_id)).SerializeToString()
        thread = threading.Thread(target=lambda: results.append(http_post(collector.http_port, body).status))
        thread.start()
        return thread

    def wait_for_queued(n: int) -> None:
        deadline = time.monotonic() + 10
        while batcher.queued_spans < n:
            assert time.monotonic() < deadline, f"never saw {n} queued spans"
            time.sleep(0.01)

    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # the one writer blocks
        first = send(b"\x01" * 8)
        wait_for_queued(1)
        second = send(b"\x02" * 8)  # gathers behind the busy writer, for up to 60 s
        wait_for_queued(2)
        stopper = threading.Thread(target=collector.stop)
        stopping = time.monotonic()
        stopper.start()
        time.sleep(0.2)
        locker.rollback()
    stopper.join(timeout=30)
    first.join(timeout=30)
    second.join(timeout=30)
    # Behaviour, not speed: shutdown flushed at once instead of waiting out the batch timeout.
    assert time.monotonic() - stopping < 20
    assert results == [200, 200]
    assert count(dsn) == 2
