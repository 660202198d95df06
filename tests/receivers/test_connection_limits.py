"""Slow and idle connections are closed by their deadlines; the connection cap holds.

Real sockets against a real collector: 500 connections that never send a byte, 100 that
send their request headers one byte a second, a keep-alive connection left idle after a
request, connections beyond ``max_concurrent_connections``; gRPC channels left idle after
a call, and TCP connections to the gRPC port that never begin the HTTP/2 handshake. A
normal client is served throughout.
"""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from tests.collector_harness import BASE_CONFIG, RunningCollector, start_collector
from tests.otlp_wire import EXPORT_PATH, make_request, make_span

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
GRPC_IDLE = 2.0
SLACK = 2.5  # the sweep runs every 0.5 s here; a loaded 2-core machine adds the rest

CONFIG = BASE_CONFIG.replace(
    '      grpc: {endpoint: "127.0.0.1:0"}\n      http: {endpoint: "127.0.0.1:0"}\n',
    '      grpc:\n        endpoint: "127.0.0.1:0"\n        handshake_timeout: 2s\n'
    "        keepalive: {server_parameters: {max_connection_idle: 2s}}\n"
    '      http:\n        endpoint: "127.0.0.1:0"\n'
    f"        read_header_timeout: {HEADER_TIMEOUT}s\n        idle_timeout: {IDLE_TIMEOUT}s\n"
    "        max_concurrent_connections: {cap}\n",
)
SLOW_REQUEST = b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"


def _config(cap: int) -> str:
    assert "{cap}" in CONFIG, "the receiver block of BASE_CONFIG changed"
    return CONFIG.replace("{cap}", str(cap))


@pytest.fixture
def collector(dsn: str, request: pytest.FixtureRequest) -> Iterator[RunningCollector]:
    running = start_collector(dsn, _config(getattr(request, "param", 0)))
    try:
        yield running
    finally:
        running.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _wait_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, float]:
    """When each socket saw its peer close (EOF or reset), by ``time.monotonic()``; waits at most ``timeout``."""
    closed: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    closed[sock] = time.monotonic()
                    selector.unregister(sock)
    return closed


def _metric(collector: RunningCollector, name: str, **labels: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", collector.metrics_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[line.index("{") + 1 : line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _body(n: int) -> bytes:
    span = make_span(trace_id=b"\xcc" + n.to_bytes(15, "big"), span_id=b"\x01" * 8, name="normal")
    return make_request(span).SerializeToString()


class _NormalClient(threading.Thread):
    """Posts a span every 0.2 s on one keep-alive connection until stopped; records every status."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stop_event.is_set():
            try:
                conn.request("POST", "/v1/traces", _body(n), {"Content-Type": "application/x-protobuf"})
                reply = conn.getresponse()
                reply.read()
                self.statuses.append(reply.status)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
            n += 1
            self.stop_event.wait(0.2)
        conn.close()


def test_idle_and_slow_header_connections_are_closed_by_their_deadlines_while_a_client_is_served(
    collector: RunningCollector, dsn: str
) -> None:
    port = collector.http_port
    client = _NormalClient(port)
    connected: dict[socket.socket, float] = {}
    for _ in range(600):
        began = time.monotonic()
        connected[_connect(port)] = began
    idle, slow = list(connected)[:500], list(connected)[500:]
    client.start()
    stop_trickle = threading.Event()

    def trickle() -> None:  # one byte a second on each slow connection, never the end of the headers
        for i in range(len(SLOW_REQUEST)):
            for sock in slow:
                try:
                    sock.send(SLOW_REQUEST[i : i + 1])
                except OSError:
                    pass  # closed by the collector: the point of the test
            if stop_trickle.wait(1.0):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        closed = _wait_closed(idle + slow, HEADER_TIMEOUT + SLACK + 5)
    finally:
        stop_trickle.set()
        trickler.join(timeout=5)
        client.stop_event.set()
        client.join(timeout=15)
        for sock in idle + slow:
            sock.close()
    waited = sorted(t - connected[sock] for sock, t in closed.items())
    assert len(closed) == 600, f"{600 - len(closed)} of 600 connections still open"
    assert waited[0] >= HEADER_TIMEOUT - 0.1, f"a connection was closed after {waited[0]:.2f} s, before its deadline"
    assert waited[-1] <= HEADER_TIMEOUT + SLACK, f"the last was closed only after {waited[-1]:.2f} s"
    # the normal client was served the whole time, and its spans are stored
    assert not client.errors and len(client.statuses) >= 10, (client.errors[:3], len(client.statuses))
    assert set(client.statuses) == {200}
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM spans WHERE name = 'normal'").fetchone()
    assert row is not None and row[0] == len(client.statuses)
    assert _metric(collector, "tracetables_receiver_closed_connections_total", receiver="otlp", transport="http",
                   reason="header_timeout") == 600  # fmt: skip


def test_a_keep_alive_connection_left_idle_is_closed_after_idle_timeout(collector: RunningCollector) -> None:
    sock = socket.create_connection(("127.0.0.1", collector.http_port), timeout=5)
    body = _body(1)
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reply = sock.recv(65536)
    answered = time.monotonic()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
    sock.setblocking(False)
    closed = _wait_closed([sock], IDLE_TIMEOUT + SLACK + 5)
    sock.close()
    assert closed, "the idle keep-alive connection was never closed"
    waited = closed[sock] - answered
    assert IDLE_TIMEOUT - 0.1 <= waited <= IDLE_TIMEOUT + SLACK, waited
    assert _metric(collector, "tracetables_receiver_closed_connections_total", receiver="otlp", transport="http",
                   reason="idle_timeout") == 1  # fmt: skip


@pytest.mark.parametrize("collector", [20], indirect=True)
def test_connections_beyond_the_cap_get_503_and_are_counted(collector: RunningCollector) -> None:
    port = collector.http_port
    held = [_connect(port) for _ in range(20)]
    time.sleep(0.3)  # let the collector accept them all
    extra = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    replies = []
    for sock in extra:
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        replies.append(data)
        sock.close()
    assert all(r.startswith(b"HTTP/1.1 503") and b"Connection: close" in r for r in replies), replies
    assert _metric(collector, "tracetables_receiver_closed_connections_total", receiver="otlp", transport="http",
                   reason="over_limit") == 5  # fmt: skip
    assert _metric(collector, "tracetables_receiver_open_connections", receiver="otlp", transport="http") == 20
    # once the held connections time out, a new one is served again
    _wait_closed(held, HEADER_TIMEOUT + SLACK + 5)
    for sock in held:
        sock.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/traces", _body(2), {"Content-Type": "application/x-protobuf"})
    assert conn.getresponse().status == 200
    conn.close()


def test_grpc_idle_channels_are_sent_away_and_raw_connections_without_a_handshake_closed(
    collector: RunningCollector,
) -> None:
    port = collector.grpc_port
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(50)]
    states: dict[int, list[tuple[float, grpc.ChannelConnectivity]]] = {i: [] for i in range(len(channels))}

    def watcher(i: int) -> object:
        return lambda state: states[i].append((time.monotonic(), state))

    raw_opened = time.monotonic()
    raw = [_connect(port) for _ in range(50)]
    try:
        called: list[float] = []
        for i, channel in enumerate(channels):
            export = channel.unary_unary(EXPORT_PATH)
            export(_body(100 + i), timeout=10)
            called.append(time.monotonic())
            channel.subscribe(watcher(i))  # type: ignore[arg-type]
        deadline = called[-1] + GRPC_IDLE + SLACK + 5
        while time.monotonic() < deadline and not all(
            any(s == grpc.ChannelConnectivity.IDLE for _, s in seen) for seen in states.values()
        ):
            time.sleep(0.05)
        went_idle = [next((t for t, s in seen if s == grpc.ChannelConnectivity.IDLE), None) for seen in states.values()]
        assert all(t is not None for t in went_idle), f"{went_idle.count(None)} of 50 channels still connected"
        idle_for = [t - c for t, c in zip(went_idle, called, strict=True) if t is not None]
        assert min(idle_for) >= GRPC_IDLE - 0.2 and max(idle_for) <= GRPC_IDLE + SLACK, (min(idle_for), max(idle_for))
        # a channel sent away reconnects on its next call
        assert channels[0].unary_unary(EXPORT_PATH)(_body(99), timeout=10) is not None
        closed = _wait_closed(raw, 2.0 + SLACK + 5)
    finally:
        for channel in channels:
            channel.close()
        for sock in raw:
            sock.close()
    assert len(closed) == 50, f"{50 - len(closed)} of 50 raw connections still open"
    assert min(closed.values()) - raw_opened >= 2.0 - 0.1
