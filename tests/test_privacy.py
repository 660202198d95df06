"""Privacy end to end: planted secrets, sent by the real OTel SDK to a collector running
the shipped default config, never reach PostgreSQL (a pg_dump of the database) nor any
log line (the collector's, and the embedded server's)."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.collector_harness import RunningCollector, start_collector
from tracetables.exporters.postgres.embedded import find_pg_bindir

DEFAULT_CONFIG_PATH = Path(__file__).parent.parent / "collector" / "default-config.yaml"
DATA = Path(__file__).parent / "testdata" / "pii"
SECRETS: list[dict[str, str]] = json.loads((DATA / "secrets.json").read_text())
# Secrets no pattern could know, caught by the key or place they are in.
KEYED = {
    "user.password": "correct-horse-battery-k3y",
    "app.api_key": "plainlookingvalue-q9z",
    "session_token": "opaque-sess-7h2m4",
    "http.request.header.authorization": "Basic dXNlcjpwYXNzd29yZDEyMw==",
    "http.request.header.cookie": "sid=cookie-val-a8b7c6",
    "http.response.header.set-cookie": "sid=set-cookie-d5e4f3; HttpOnly",
}
URL = "https://alice:urlpass-x7y8z9@api.example.com/v1/hooks?token=qtoken-m3n4b5&page=2"
URL_NEEDLES = ["urlpass-x7y8z9", "qtoken-m3n4b5"]


@pytest.fixture
def default_collector(dsn: str) -> Iterator[RunningCollector]:
    """A collector on the shipped default config (masking on), on loopback ports."""
    running = start_collector(
        dsn,
        DEFAULT_CONFIG_PATH.read_text(),
        env={
            "TRACETABLES_DATABASE_URL": dsn,
            "TRACETABLES_GRPC_ENDPOINT": "127.0.0.1:0",
            "TRACETABLES_HTTP_ENDPOINT": "127.0.0.1:0",
            "TRACETABLES_LOG_LEVEL": "debug",
        },
    )
    try:
        yield running
    finally:
        running.stop()


def _emit(collector: RunningCollector) -> int:
    """Every secret in every place a value can hide; returns the number of spans sent."""
    resource = {f"contact.{i}": s["value"] for i, s in enumerate(SECRETS)}
    sent = 0
    for exporter in (
        GrpcExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10),
        HttpExporter(endpoint=collector.http_url, timeout=10),
    ):
        provider = TracerProvider(resource=Resource.create({"service.name": "leaky", **resource}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests.privacy", attributes={"scope.owner": SECRETS[0]["value"]})
        with tracer.start_as_current_span("anchor") as anchor:
            pass
        for i, secret in enumerate(SECRETS):
            value = secret["value"]
            state = {"user": {"note": f"my details: {value}", "list": [value, 1]}, "text": value}
            with tracer.start_as_current_span(
                f"step for {value}",
                kind=SpanKind.CLIENT,
                links=[Link(anchor.get_span_context(), {"flow.synchronization": "S", "why": value})],
                attributes={
                    "flow.role": "step",
                    "flow.node.id": "n",
                    "session.id": "s-privacy",
                    "flow.step.number": i,
                    "note": f"the customer said {value} twice: {value}",
                    "tags": ["ok", value],
                    "flow.state.before": json.dumps(state),
                    "flow.state.after": json.dumps([state]),
                    "flow.node.details": json.dumps({"response_body": {"raw": value}}),
                    "url.full": URL,
                    **KEYED,
                },
            ) as span:
                span.add_event(f"saw {value}", {"detail": value})
                span.set_status(Status(StatusCode.ERROR, f"failed for {value}"))
            sent += 1
        provider.shutdown()
        sent += 1
    return sent


def test_no_planted_secret_reaches_the_database_or_a_log(
    default_collector: RunningCollector, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent = _emit(default_collector)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (sent,)
        assert conn.execute("SELECT count(*) FROM flow_execution_steps").fetchone() == (2 * len(SECRETS),)
        masked = conn.execute(
            "SELECT attributes->>'tracetables.masked' FROM spans WHERE name LIKE 'step for %' LIMIT 1"
        ).fetchone()
    assert masked is not None and json.loads(masked[0])  # the summary says what was masked
    dump = _pg_dump(dsn)
    assert "step for [" in dump and "[REDACTED]" in dump  # the dump holds the masked spans
    needles = [s["needle"] for s in SECRETS] + list(KEYED.values()) + URL_NEEDLES
    leaked = [n for n in needles if n in dump]
    assert leaked == []
    logs = caplog.text + _server_log(dsn)
    assert [n for n in needles if n in logs] == []


def _pg_dump(dsn: str) -> str:
    result = subprocess.run(
        [str(find_pg_bindir() / "pg_dump"), "--data-only", "--no-owner", "-d", dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "COPY public.spans" in result.stdout
    return result.stdout


def _server_log(dsn: str) -> str:
    """The embedded test server's log (empty when the suite runs on TRACETABLES_TEST_DSN)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host", ""))
    log = Path(host).parent / "log" / "server.log"
    return log.read_text(errors="replace") if host.startswith("/") and log.exists() else ""


def test_masking_off_is_an_explicit_choice(dsn: str) -> None:
    """The shipped config masks; the harness's bare config (no masking processors) does not."""
    text = DEFAULT_CONFIG_PATH.read_text()
    assert "processors: [memory_limiter, trace_level, pii_masking, webhook_redaction, batch]" in text
    running = start_collector(dsn)
    try:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(HttpExporter(endpoint=running.http_url, timeout=10)))
        with provider.get_tracer("t").start_as_current_span("x", attributes={"user.email": "raw@example.com"}):
            pass
        provider.shutdown()
    finally:
        running.stop()
    with psycopg.connect(dsn) as conn:
        row: Any = conn.execute("SELECT attributes->>'user.email' FROM spans").fetchone()
    assert row == ("raw@example.com",)
