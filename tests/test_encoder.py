"""Row encoding in worker processes, and in-process: same rows, and a dead worker is replaced."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from tests.collector_harness import BASE_CONFIG, start_collector
from tests.otlp_strategies import canonical
from tests.otlp_wire import http_post, make_request, make_span
from tracetables.exporters.postgres.exporter import PostgresExporter
from tracetables.exporters.postgres.reader import read_request


@pytest.mark.parametrize("workers", [0, 1])
def test_encoding_in_process_or_in_workers_stores_the_same(workers: int, dsn: str) -> None:
    """encoding_workers 0 (in the event loop) and 1 (a worker process) store identical spans."""
    config = BASE_CONFIG.replace("    dsn: ${env:DSN}\n", f"    dsn: ${{env:DSN}}\n    encoding_workers: {workers}\n")
    collector = start_collector(dsn, config)
    try:
        exporter = collector.service.exporters["postgres"]
        assert isinstance(exporter, PostgresExporter)
        assert len(exporter._encoder.worker_pids) == workers
        request = make_request(*(make_span(span_id=bytes([i + 1]) * 8, name=f"s{i}", k=i) for i in range(20)))
        assert http_post(collector.http_port, request.SerializeToString()).status == 200
        with psycopg.connect(dsn) as conn:
            assert canonical(read_request(conn)) == canonical(request)
    finally:
        collector.stop()


def test_killed_encoding_worker_is_replaced_and_the_batch_still_stored(dsn: str) -> None:
    """SIGKILL to a worker: the next request is still acknowledged and stored, by new workers."""
    config = BASE_CONFIG.replace("    dsn: ${env:DSN}\n", "    dsn: ${env:DSN}\n    encoding_workers: 2\n")
    collector = start_collector(dsn, config)
    try:
        exporter = collector.service.exporters["postgres"]
        assert isinstance(exporter, PostgresExporter)
        before = exporter._encoder.worker_pids
        assert before
        os.kill(before[0], signal.SIGKILL)
        reply = http_post(collector.http_port, make_request(make_span(name="after-kill")).SerializeToString())
        assert reply.status == 200
        # The pool learns of the death asynchronously; the export after that replaces it.
        deadline = time.monotonic() + 20
        sent = 1
        while before[0] in exporter._encoder.worker_pids or len(exporter._encoder.worker_pids) != len(before):
            assert time.monotonic() < deadline, "the dead worker was never replaced"
            time.sleep(0.1)
            span = make_span(span_id=sent.to_bytes(8, "big"), name="after-kill")
            assert http_post(collector.http_port, make_request(span).SerializeToString()).status == 200
            sent += 1
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM spans WHERE name = 'after-kill'").fetchone() == (sent,)
    finally:
        collector.stop()
