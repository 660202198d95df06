"""TLS and mutual TLS on both receivers, with the real OTel SDK exporters and a real CA.

A client that trusts the CA gets its spans stored; one that does not fails the handshake
and nothing is stored; with ``client_ca_file`` a client must also present a certificate.
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.collector_harness import RunningCollector, start_collector
from tests.tls_certs import Pki, make_pki

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:0"
        tls: {tls}
      http:
        endpoint: "127.0.0.1:0"
        tls: {tls}
processors:
  batch: {{timeout: 20ms}}
exporters:
  postgres:
    dsn: ${{env:DSN}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [postgres]}}
"""


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets ``REQUESTS_CA_BUNDLE`` override a session's own CA (the SDK's ``certificate_file``)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki: Pki, mutual: bool) -> str:
    fields = {"cert_file": pki.server.cert, "key_file": pki.server.key}
    if mutual:
        fields["client_ca_file"] = pki.ca
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in fields.items()) + "}"


def _collector(dsn: str, pki: Pki, mutual: bool) -> Iterator[RunningCollector]:
    running = start_collector(dsn, CONFIG.format(tls=_tls(pki, mutual)))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def tls_collector(dsn: str, pki: Pki) -> Iterator[RunningCollector]:
    yield from _collector(dsn, pki, mutual=False)


@pytest.fixture
def mtls_collector(dsn: str, pki: Pki) -> Iterator[RunningCollector]:
    yield from _collector(dsn, pki, mutual=True)


def _grpc(c: RunningCollector, ca: Path, client: Any = None) -> SpanExporter:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return GrpcExporter(endpoint=f"127.0.0.1:{c.grpc_port}", credentials=credentials, timeout=3)


def _http(c: RunningCollector, ca: Path, client: Any = None) -> SpanExporter:
    return HttpExporter(
        endpoint=f"https://127.0.0.1:{c.http_port}/v1/traces",
        certificate_file=str(ca),
        client_certificate_file=str(client.cert) if client else None,
        client_key_file=str(client.key) if client else None,
        timeout=3,
    )


TRANSPORTS = {"grpc": _grpc, "http": _http}


def _send(exporter: SpanExporter, name: str) -> SpanExportResult:
    """Export one finished span straight through ``exporter`` and return its result."""
    provider = TracerProvider()
    results: list[SpanExportResult] = []

    class Recording(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            results.append(exporter.export(spans))
            return results[-1]

        def shutdown(self) -> None:
            exporter.shutdown()

    provider.add_span_processor(SimpleSpanProcessor(Recording()))
    provider.get_tracer("tests.tls").start_span(name).end()
    provider.shutdown()
    assert len(results) == 1
    return results[0]


def _stored(conn: psycopg.Connection[tuple[object, ...]], name: str) -> int:
    row = conn.execute("SELECT count(*) FROM spans WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_client_trusting_the_ca_gets_its_span_stored(
    transport: str, tls_collector: RunningCollector, pki: Pki, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Over TLS, the SDK exporter given the CA succeeds and the span is in the table."""
    result = _send(TRANSPORTS[transport](tls_collector, pki.ca), f"tls-{transport}")
    assert result is SpanExportResult.SUCCESS
    assert _stored(conn, f"tls-{transport}") == 1


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_client_not_trusting_the_ca_fails_and_stores_nothing(
    transport: str, tls_collector: RunningCollector, pki: Pki, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A client trusting another CA fails the handshake; nothing reaches the table."""
    result = _send(TRANSPORTS[transport](tls_collector, pki.other_ca), f"untrusted-{transport}")
    assert result is SpanExportResult.FAILURE
    assert _stored(conn, f"untrusted-{transport}") == 0


def test_plaintext_client_is_not_served(tls_collector: RunningCollector) -> None:
    """A plain-HTTP request to the TLS port gets no OTLP answer (the server speaks only TLS)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{tls_collector.http_port}/v1/traces",
        data=b"",
        method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )
    with pytest.raises(OSError):
        urllib.request.urlopen(request, timeout=5)


def test_http_min_version_1_3_refuses_a_tls_1_2_client(dsn: str, pki: Pki) -> None:
    """With ``min_version: "1.3"`` a client capped at TLS 1.2 fails; an unrestricted one gets 1.3."""
    tls = _tls(pki, mutual=False).replace("}", ', min_version: "1.3"}')
    text = CONFIG.format(tls=tls).replace("tls: " + tls, "", 1)  # the gRPC receiver stays plaintext
    running = start_collector(dsn, text)
    url = f"https://127.0.0.1:{running.http_port}/v1/traces"
    try:
        capped = ssl.create_default_context(cafile=str(pki.ca))
        capped.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", running.http_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLError):
                capped.wrap_socket(raw, server_hostname="127.0.0.1")
        with urllib.request.urlopen(
            urllib.request.Request(url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}),
            timeout=5,
            context=ssl.create_default_context(cafile=str(pki.ca)),
        ) as response:
            assert response.status == 200  # an empty request is a valid, empty export
    finally:
        running.stop()


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_mutual_tls_refuses_a_client_without_a_certificate(
    transport: str, mtls_collector: RunningCollector, pki: Pki, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """With ``client_ca_file``, a client that trusts the server but shows no certificate is refused."""
    result = _send(TRANSPORTS[transport](mtls_collector, pki.ca), f"anonymous-{transport}")
    assert result is SpanExportResult.FAILURE
    assert _stored(conn, f"anonymous-{transport}") == 0


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_mutual_tls_accepts_a_client_with_a_certificate(
    transport: str, mtls_collector: RunningCollector, pki: Pki, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """With ``client_ca_file``, a client certificate from that CA gets the span stored."""
    result = _send(TRANSPORTS[transport](mtls_collector, pki.ca, pki.client), f"mutual-{transport}")
    assert result is SpanExportResult.SUCCESS
    assert _stored(conn, f"mutual-{transport}") == 1
