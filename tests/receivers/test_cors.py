"""CORS on the OTLP/HTTP receiver: browsers' preflights and the allow-origin header on POSTs.

Real requests over a real socket to a running collector; the browser side is played by
``http.client`` sending the headers a browser would.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.collector_harness import RunningCollector, start_collector
from tracetables.collector.receivers.cors import CorsConfig

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:0"
        cors:
          allowed_origins: ["https://app.example.com", "https://*.shop.example"]
          allowed_headers: [X-Tenant]
          max_age: 600
processors:
  batch: {timeout: 20ms}
exporters:
  postgres:
    dsn: ${env:DSN}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [postgres]}
"""

ALLOW = "Access-Control-Allow-"


@pytest.fixture
def cors_collector(dsn: str) -> Iterator[RunningCollector]:
    running = start_collector(dsn, CONFIG)
    try:
        yield running
    finally:
        running.stop()


def _request(port: int, method: str, headers: dict[str, str], body: bytes = b"") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, "/v1/traces", body=body or None, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _preflight(port: int, origin: str, request_headers: str = "content-type") -> http.client.HTTPResponse:
    return _request(
        port,
        "OPTIONS",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": request_headers,
        },
    )


def _allow_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    return {k: v for k, v in response.getheaders() if k.startswith(ALLOW) or k == "Access-Control-Max-Age"}


@pytest.mark.parametrize("origin", ["https://app.example.com", "https://eu.shop.example", "HTTPS://APP.EXAMPLE.COM"])
def test_preflight_from_an_allowed_origin_gets_the_allow_headers(cors_collector: RunningCollector, origin: str) -> None:
    """204 with Allow-Origin (the origin itself), Allow-Methods, Allow-Headers and Max-Age."""
    response = _preflight(cors_collector.http_port, origin, "Content-Type, X-Tenant")
    assert response.status == 204
    assert _allow_headers(response) == {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type, x-tenant",
        "Access-Control-Max-Age": "600",
    }


@pytest.mark.parametrize("origin", ["https://evil.example", "http://app.example.com", "https://shop.example"])
def test_preflight_from_another_origin_gets_no_allow_headers(cors_collector: RunningCollector, origin: str) -> None:
    """A disallowed origin (other host, other scheme, the wildcard's bare parent) gets 204 and nothing to allow."""
    response = _preflight(cors_collector.http_port, origin)
    assert response.status == 204
    assert _allow_headers(response) == {}


def test_preflight_asking_for_an_unlisted_header_gets_no_allow_headers(cors_collector: RunningCollector) -> None:
    """A header neither default nor in ``allowed_headers`` makes the preflight a refusal."""
    response = _preflight(cors_collector.http_port, "https://app.example.com", "content-type, authorization")
    assert response.status == 204
    assert _allow_headers(response) == {}


def test_preflight_for_another_method_gets_no_allow_headers(cors_collector: RunningCollector) -> None:
    """The traces path takes POST only; a preflight for PUT is not allowed."""
    response = _request(
        cors_collector.http_port,
        "OPTIONS",
        {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "PUT",
        },
    )
    assert response.status == 204
    assert _allow_headers(response) == {}


def test_post_from_an_allowed_origin_carries_allow_origin(cors_collector: RunningCollector) -> None:
    """The actual POST is served as usual and its answer names the origin, so the browser can read it."""
    body = ExportTraceServiceRequest().SerializeToString()
    response = _request(
        cors_collector.http_port,
        "POST",
        {
            "Origin": "https://app.example.com",
            "Content-Type": "application/x-protobuf",
        },
        body,
    )
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "https://app.example.com"
    assert "Origin" in (response.getheader("Vary") or "")


def test_error_answer_to_an_allowed_origin_carries_allow_origin(cors_collector: RunningCollector) -> None:
    """A refused POST (bad content type) still names the origin, so the browser can read the error."""
    response = _request(
        cors_collector.http_port,
        "POST",
        {
            "Origin": "https://app.example.com",
            "Content-Type": "text/plain",
        },
        b"hello",
    )
    assert response.status == 415
    assert response.getheader("Access-Control-Allow-Origin") == "https://app.example.com"


def test_post_from_another_origin_has_no_allow_origin(cors_collector: RunningCollector) -> None:
    """The server still answers (CORS is enforced by browsers), but grants nothing."""
    body = ExportTraceServiceRequest().SerializeToString()
    response = _request(
        cors_collector.http_port,
        "POST",
        {
            "Origin": "https://evil.example",
            "Content-Type": "application/x-protobuf",
        },
        body,
    )
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") is None


def test_without_cors_options_is_405_not_500(collector: RunningCollector) -> None:
    """With no ``cors`` block nothing changes: OPTIONS is a clean 405, POSTs carry no CORS headers."""
    response = _preflight(collector.http_port, "https://app.example.com")
    assert response.status == 405
    assert _allow_headers(response) == {}


def test_star_allows_any_origin() -> None:
    """``allowed_origins: ["*"]`` matches every origin."""
    config = CorsConfig(allowed_origins=("*",))
    assert config.allows_origin("https://anything.example")
    assert config.allows_origin("http://localhost:3000")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.shop.example", True),
        ("https://a.b.shop.example", True),
        ("https://shop.example", False),
        ("http://a.shop.example", False),
        ("https://a.shop.example.evil", False),
    ],
)
def test_wildcard_origin_matches_only_its_pattern(origin: str, allowed: bool) -> None:
    """``https://*.shop.example`` matches subdomains over https and nothing else."""
    assert CorsConfig(allowed_origins=("https://*.shop.example",)).allows_origin(origin) is allowed
