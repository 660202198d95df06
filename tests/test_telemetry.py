"""The collector's own telemetry: /metrics counts, the health check, request and batch logs."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.collector_harness import start_collector
from tests.otlp_wire import grpc_export, http_post, make_request, make_span
from tracetables.collector.config import parse_config
from tracetables.collector.errors import ConfigError
from tracetables.collector.extensions.health_check import HealthCheckExtension
from tracetables.collector.log_format import JsonLogFormatter
from tracetables.collector.service import Service
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:0"}
      http: {endpoint: "127.0.0.1:0", max_request_body_size: 4096}
processors:
  pii_masking: {}
  batch: {timeout: 20ms}
exporters:
  postgres:
    dsn: ${env:DSN}
    retry_on_failure: {max_elapsed_time: 1s, initial_interval: 50ms, max_interval: 200ms}
extensions:
  health_check: {endpoint: "127.0.0.1:0", path: /health, check_interval: CHECK}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [pii_masking, batch], exporters: [postgres]}
  telemetry:
    metrics: {address: "127.0.0.1:0"}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config(check_interval: str = "200ms") -> str:
    return CONFIG.replace("CHECK", check_interval)


def scrape(port: int) -> Samples:
    """GET /metrics and parse it: (sample name, labels) → value."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        conn.close()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def get_health(port: int) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def spans(n: int, first: int) -> list[object]:
    return [make_span(span_id=bytes([first + i]) * 8, name=f"s{first + i}") for i in range(n)]


def test_metrics_count_a_mixed_run_by_reason(dsn: str) -> None:
    """Good, malformed, oversized, unsupported and partly invalid requests over both
    transports: /metrics counts each as sent."""
    collector = start_collector(dsn, config())
    try:
        for i in range(3):  # 6 good spans over HTTP
            body = make_request(*spans(2, 10 + 2 * i)).SerializeToString()  # type: ignore[arg-type]
            assert http_post(collector.http_port, body).status == 200
        for i in range(2):  # 6 good spans over gRPC
            body = make_request(*spans(3, 40 + 3 * i)).SerializeToString()  # type: ignore[arg-type]
            assert grpc_export(collector.grpc_port, body)[0] == grpc.StatusCode.OK
        # One value the masking processor must replace.
        masked = make_request(
            make_span(span_id=b"\x60" * 8, note="write to ann@example.com or bo@example.org", password="hunter2")
        ).SerializeToString()
        assert http_post(collector.http_port, masked).status == 200
        # Partial success: 2 stored, 1 refused by the receiver's checks (all-zero trace id).
        partial = make_request(*spans(2, 70), make_span(trace_id=b"\x00" * 16, span_id=b"\x72" * 8))
        reply = http_post(collector.http_port, partial.SerializeToString())
        assert reply.status == 200
        for _ in range(2):
            assert http_post(collector.http_port, b"\xff\xff\xff").status == 400
        assert grpc_export(collector.grpc_port, b"\xff\xff\xff")[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert http_post(collector.http_port, b"\x00" * 5000).status == 413
        assert http_post(collector.http_port, b"{}", content_type="text/plain").status == 415

        m = scrape(collector.metrics_port)
        http_, grpc_ = {"receiver": "otlp", "transport": "http"}, {"receiver": "otlp", "transport": "grpc"}
        assert value(m, "otelcol_receiver_accepted_spans_total", **http_) == 6 + 1 + 2
        assert value(m, "otelcol_receiver_accepted_spans_total", **grpc_) == 6
        assert value(m, "tracetables_receiver_refused_requests_total", **http_, reason="malformed") == 2
        assert value(m, "tracetables_receiver_refused_requests_total", **http_, reason="too_large") == 1
        assert value(m, "tracetables_receiver_refused_requests_total", **http_, reason="unsupported") == 1
        assert value(m, "tracetables_receiver_refused_requests_total", **grpc_, reason="malformed") == 1
        # Undecodable bodies have no spans to count.
        assert value(m, "otelcol_receiver_refused_spans_total", **http_, reason="malformed") == 0
        assert value(m, "tracetables_rejected_spans_total", reason="limits") == 1
        assert value(m, "otelcol_processor_incoming_spans_total", processor="pii_masking") == 15
        assert value(m, "otelcol_processor_outgoing_spans_total", processor="pii_masking") == 15
        assert value(m, "tracetables_masked_values_total", processor="pii_masking", kind="email") == 2
        assert value(m, "tracetables_masked_values_total", processor="pii_masking", kind="key") == 1
        masked_kinds = {dict(labels)["kind"] for (name, labels) in m if name == "tracetables_masked_values_total"}
        assert masked_kinds == {"email", "key"}
        assert value(m, "otelcol_exporter_sent_spans_total", exporter="postgres") == 15
        assert value(m, "otelcol_exporter_send_failed_spans_total", exporter="postgres") == 0
        assert value(m, "otelcol_exporter_queue_size", exporter="postgres") == 0
        assert value(m, "tracetables_batch_commit_seconds_count", exporter="postgres") >= 1
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM spans").fetchone() == (15,)
    finally:
        collector.stop()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so the test may stop and restart it."""
    base = Path(tempfile.mkdtemp(prefix="tt-health-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=base / "data", durable=False))
    migrate(server.start())
    try:
        yield server
    finally:
        server.stop()


def wait_health(port: int, status: int) -> dict[str, object]:
    """Probe until the answer is ``status`` (the store check is cached for 200 ms)."""
    deadline = time.monotonic() + 30
    while True:
        got, body = get_health(port)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        time.sleep(0.1)


def test_health_follows_the_store_down_and_up(own_postgres: EmbeddedPostgres) -> None:
    """200 while the store answers; 503 naming the error while it is stopped (and a
    refused request is counted as unavailable); 200 again once it is back."""
    dsn = own_postgres.dsn
    collector = start_collector(dsn, config())
    try:
        status, body = get_health(collector.health_port)
        assert status == 200
        assert body == {"status": "ok", "pipelines": ["traces"], "store": "reachable"}
        own_postgres.stop()
        body = wait_health(collector.health_port, 503)
        assert body["status"] == "unavailable" and body["store"] == "unreachable"
        assert body["error"] == "OperationalError"
        reply = http_post(collector.http_port, make_request(*spans(2, 1)).SerializeToString())  # type: ignore[arg-type]
        assert reply.status == 503
        m = scrape(collector.metrics_port)
        labels = {"receiver": "otlp", "transport": "http", "reason": "unavailable"}
        assert value(m, "otelcol_receiver_refused_spans_total", **labels) == 2
        assert value(m, "otelcol_exporter_send_failed_spans_total", exporter="postgres") == 2
        assert own_postgres.start() == dsn
        assert wait_health(collector.health_port, 200)["store"] == "reachable"
    finally:
        collector.stop()


def test_probes_share_one_store_check(dsn: str) -> None:
    """Many probes within ``check_interval`` open one connection, not one each."""
    collector = start_collector(dsn, config("1h"))
    try:
        for _ in range(20):
            assert get_health(collector.health_port)[0] == 200
        extension = collector.service.extensions["health_check"]
        assert isinstance(extension, HealthCheckExtension)
        assert extension.store_checks == 1
    finally:
        collector.stop()


def test_health_says_starting_then_stopping(dsn: str) -> None:
    """Before every component started the probe answers 503 starting; once shutdown
    began, 503 stopping."""

    async def run() -> list[tuple[int, object]]:
        service = Service(parse_config(config(), {"DSN": dsn}))
        extension = service.extensions["health_check"]
        assert isinstance(extension, HealthCheckExtension)
        await extension.start(service)  # only the extension: the service is still starting
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{extension.port}/health"
                async with session.get(url) as response:
                    answers.append((response.status, (await response.json())["status"]))
                await service.shutdown()
                async with session.get(url) as response:
                    answers.append((response.status, (await response.json())["status"]))
        finally:
            await extension.shutdown()
        return answers

    assert asyncio.run(run()) == [(503, "starting"), (503, "stopping")]


def test_debug_log_has_one_line_per_request_and_batch_without_values(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At debug level: one line per request (transport, spans, bytes, outcome, latency)
    and one per batch; a planted attribute value appears in none."""
    planted = "planted-secret-value-7731"
    caplog.set_level(logging.DEBUG)
    collector = start_collector(dsn, config())
    try:
        body = make_request(make_span(span_id=b"\x21" * 8, token=planted), make_span(span_id=b"\x22" * 8))
        assert http_post(collector.http_port, body.SerializeToString()).status == 200
        one = make_request(make_span(span_id=b"\x23" * 8, token=planted)).SerializeToString()
        assert grpc_export(collector.grpc_port, one)[0] == grpc.StatusCode.OK
        assert http_post(collector.http_port, b"\xff\xff").status == 400
    finally:
        collector.stop()
    requests = [r.getMessage() for r in caplog.records if r.name == "tracetables.collector.receivers"]
    assert len(requests) == 3
    http_ok, grpc_ok, bad = requests
    assert http_ok.startswith("request transport=http spans=2 ") and "outcome=ok" in http_ok
    assert f"bytes={len(body.SerializeToString())} " in http_ok and "latency_ms=" in http_ok
    assert grpc_ok.startswith("request transport=grpc spans=1 ") and "outcome=ok" in grpc_ok
    assert "transport=http" in bad and "outcome=malformed" in bad
    batches = [
        r.getMessage()
        for r in caplog.records
        if r.name == "tracetables.exporters.postgres.exporter" and r.getMessage().startswith("batch ")
    ]
    assert batches and all("outcome=ok" in b and "latency_ms=" in b for b in batches)
    assert sum(int(b.split("spans=")[1].split()[0]) for b in batches) == 3
    assert not [r for r in caplog.records if planted in r.getMessage()]


def test_json_log_lines_have_ts_level_logger_msg() -> None:
    """``logs.encoding: json`` formats each record as one JSON object."""
    record = logging.LogRecord("tracetables.x", logging.WARNING, __file__, 1, "queue %s", ("full",), None)
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "tracetables.x" and entry["msg"] == "queue full"
    assert entry["ts"].endswith("+00:00")


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("metrics: {level: verbose}", "service.telemetry.metrics.level: must be one of none, basic, normal, detailed"),
        ("metrics: {address: nowhere}", "service.telemetry.metrics.address: expected host:port"),
        ("logs: {encoding: xml}", "service.telemetry.logs.encoding: must be console or json"),
    ],
)
def test_bad_telemetry_config_is_named(snippet: str, message: str) -> None:
    text = config().replace('metrics: {address: "127.0.0.1:0"}', snippet)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {"DSN": "host=unused"})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        ('endpoint: "nope"', "extensions.health_check.endpoint: expected host:port"),
        ('endpoint: "127.0.0.1:0", path: health', "extensions.health_check.path: must start with '/'"),
    ],
)
def test_bad_health_check_config_is_named(replacement: str, message: str) -> None:
    text = config().replace('endpoint: "127.0.0.1:0", path: /health', replacement)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {"DSN": "host=unused"})
    assert message in str(caught.value)


def test_metrics_level_none_serves_nothing(dsn: str) -> None:
    """``level: none`` starts no metrics endpoint; the pipeline still runs."""
    collector = start_collector(dsn, config().replace('metrics: {address: "127.0.0.1:0"}', "metrics: {level: none}"))
    try:
        assert collector.service.metrics is None
        assert http_post(collector.http_port, make_request(make_span()).SerializeToString()).status == 200
    finally:
        collector.stop()


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [
        ('metrics: {address: "127.0.0.1:0"}', "service.telemetry.metrics.address: cannot listen on 127.0.0.1:"),
        ('health_check: {endpoint: "127.0.0.1:0"', "extensions.health_check.endpoint: cannot listen on 127.0.0.1:"),
    ],
)
def test_taken_port_is_a_clear_error(dsn: str, placeholder: str, message: str) -> None:
    """A metrics or health address already in use fails start-up naming the key."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config().replace(placeholder, placeholder.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        with pytest.raises(ConfigError) as caught:
            start_collector(dsn, text)
    assert message in str(caught.value)


def test_projected_spans_are_counted_by_table(dsn: str) -> None:
    """Runs, steps, calls, actions and events: the projection counter of each table equals
    the rows it holds afterwards; plain spans count nowhere."""
    roles = {"run": 2, "step": 3, "call": 4, "action": 1, "event": 2}
    tables = {
        "run": "execution_log_rows",
        "step": "flow_step_rows",
        "call": "communication_rows",
        "action": "action_rows",
        "event": "event_rows",
    }
    batch, n = [], 0
    for role, count in roles.items():
        for _ in range(count):
            n += 1
            batch.append(make_span(trace_id=bytes([n]) * 16, span_id=bytes([n]) * 8, name=role, **{"flow.role": role}))
    batch.append(make_span(trace_id=b"\x77" * 16, span_id=b"\x77" * 8, name="plain"))
    collector = start_collector(dsn, config())
    try:
        assert http_post(collector.http_port, make_request(*batch).SerializeToString()).status == 200
        m = scrape(collector.metrics_port)
        with psycopg.connect(dsn) as conn:
            for role, table in tables.items():
                stored = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                assert stored == (roles[role],), table
                counted = value(m, "tracetables_projected_spans_total", exporter="postgres", table=table)
                assert counted == roles[role], table
        counted_tables = {dict(labels)["table"] for (name, labels) in m if name == "tracetables_projected_spans_total"}
        assert counted_tables == set(tables.values())
    finally:
        collector.stop()
