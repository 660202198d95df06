"""http_call() around real requests to a loopback server: 200, 500 and connection refused."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracetables.instrumentation import http_call


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        status = 500 if self.path == "/fail" else 200
        body = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_call_records_each_attempt(server: str) -> None:
    """A 500, then a refused connection, then a 200: three attempts of one key, statuses and errors recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    body = {"order": 5}
    failed = http_call(
        "order-5",
        lambda: requests.post(f"{server}/fail", json=body, timeout=5),
        method="POST",
        url=f"{server}/fail",
        request=body,
        tracer_provider=provider,
    )
    assert failed.status_code == 500
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    with pytest.raises(requests.ConnectionError):
        http_call(
            "order-5",
            lambda: requests.post(refused_url, json=body, timeout=5),
            method="POST",
            url=refused_url,
            request=body,
            tracer_provider=provider,
        )
    ok = http_call(
        "order-5",
        lambda: requests.post(f"{server}/hook", json=body, timeout=5),
        method="POST",
        url=f"{server}/hook",
        request=body,
        tracer_provider=provider,
    )
    assert ok.json() == {"ok": True}
    attempts = sorted(
        (s for s in exporter.get_finished_spans() if not (s.attributes or {}).get("flow.pending")),
        key=lambda s: s.attributes["flow.call.attempt"],
    )  # type: ignore[index]
    assert [s.attributes["flow.call.attempt"] for s in attempts] == [1, 2, 3]  # type: ignore[index]
    first, second, third = (dict(s.attributes or {}) for s in attempts)
    assert first["http.response.status_code"] == 500 and first["error.type"] == "500"
    assert second["error.type"] == "ConnectionError" and "http.response.status_code" not in second
    assert third["http.response.status_code"] == 200 and json.loads(str(third["flow.call.response"])) == {"ok": True}
    assert json.loads(str(third["flow.call.request"])) == body
    assert third["server.address"] == "127.0.0.1"
    assert attempts[2].name == "POST /hook"
