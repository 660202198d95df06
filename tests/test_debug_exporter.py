"""The debug exporter, alone and beside postgres in one pipeline."""

from __future__ import annotations

import logging

import psycopg
import pytest

from tests.collector_harness import start_collector
from tests.otlp_wire import http_post, make_request, make_span
from tracetables.exporters.debug import DebugExporter

DEBUG_ONLY = """
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:0"}
exporters:
  debug: {verbosity: detailed}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"""

BOTH = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:0"}
      http: {endpoint: "127.0.0.1:0"}
processors:
  batch: {}
exporters:
  postgres: {dsn: "${env:DSN}", encoding_workers: 0}
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [postgres, debug]}
"""


def test_debug_exporter_logs_counts_and_ids_not_values(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """Without a database: the request succeeds, and the log names counts, ids and names but no attribute value."""
    caplog.set_level(logging.INFO, logger="tracetables.exporters.debug")
    collector = start_collector(dsn, DEBUG_ONLY)
    try:
        span = make_span(name="checkout", email="someone@example.com")
        reply = http_post(collector.http_port, make_request(span, make_span(span_id=b"\x03" * 8)).SerializeToString())
        assert reply.status == 200
        exporter = collector.service.exporters["debug"]
        assert isinstance(exporter, DebugExporter)
        assert (exporter.batches, exporter.spans) == (1, 2)
    finally:
        collector.stop()
    assert "1 resource spans, 2 spans" in caplog.text
    assert "span_id=" + "02" * 8 in caplog.text and "'checkout'" in caplog.text
    assert "someone@example.com" not in caplog.text


def test_pipeline_fans_out_to_postgres_and_debug(dsn: str) -> None:
    """Both exporters of one pipeline get the batch; the request is acknowledged after both."""
    collector = start_collector(dsn, BOTH)
    try:
        assert http_post(collector.http_port, make_request(make_span()).SerializeToString()).status == 200
        exporter = collector.service.exporters["debug"]
        assert isinstance(exporter, DebugExporter) and exporter.spans == 1
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM spans").fetchone() == (1,)
    finally:
        collector.stop()
