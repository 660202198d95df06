"""One poison client harms no one: the fuzzer's ill-typed body, sent beside eight valid clients.

The body holds an AnyValue whose kvlist_value (field 6) arrives as a varint. Protobuf keeps
it as an unknown field, so the receiver accepts the request; the encoder used to refuse it
as malformed, failing every request the batch processor had merged with it (HTTP 500 /
gRPC INTERNAL, their spans lost). Now the encoder skips the field as protobuf did.
"""

from __future__ import annotations

import threading
import time

import grpc
import psycopg

from tests.collector_harness import BASE_CONFIG, start_collector
from tests.otlp_wire import grpc_export, http_post, make_request, make_span

CONFIG = BASE_CONFIG.replace(
    "processors:\n  batch: {timeout: 20ms}\n", "processors:\n  pii_masking: {}\n  batch: {timeout: 20ms}\n"
).replace("processors: [batch]", "processors: [pii_masking, batch]")
SECONDS = 10.0
CLIENTS = 8
SPANS_PER_REQUEST = 100
POISON_VALUE = bytes.fromhex("0a01783022")  # string_value "x", then field 6 with wire type 0


def _poison_request(n: int) -> bytes:
    span = make_span(trace_id=b"\xee" + n.to_bytes(15, "big"), span_id=b"\x01" * 8, name="poison")
    span.attributes.add(key="payload").value.MergeFromString(POISON_VALUE)
    return make_request(span).SerializeToString()


def _valid_request(client: int, n: int) -> bytes:
    trace_id = bytes([client + 1]) + n.to_bytes(15, "big")
    spans = [make_span(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), name=f"c{client}") for i in range(100)]
    return make_request(*spans).SerializeToString()


def test_eight_valid_clients_beside_a_poison_client_lose_nothing(dsn: str) -> None:
    """10 s of 8 clients (HTTP and gRPC) and one poison client every 50 ms: all answered OK, all stored."""
    collector = start_collector(dsn, CONFIG)
    outcomes: list[tuple[str, int, object]] = []  # (kind, spans, answer)
    lock = threading.Lock()
    stop_at = time.monotonic() + SECONDS

    def send(body: bytes, over_grpc: bool) -> object:
        if over_grpc:
            return grpc_export(collector.grpc_port, body)[0]
        return http_post(collector.http_port, body).status

    def valid(client: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            answer = send(_valid_request(client, n), over_grpc=client % 2 == 1)
            with lock:
                outcomes.append(("valid", SPANS_PER_REQUEST, answer))
            n += 1

    def poison() -> None:
        n = 0
        while time.monotonic() < stop_at:
            answer = send(_poison_request(n), over_grpc=n % 2 == 1)
            with lock:
                outcomes.append(("poison", 1, answer))
            n += 1
            time.sleep(0.05)

    try:
        threads = [threading.Thread(target=valid, args=(c,)) for c in range(CLIENTS)]
        threads.append(threading.Thread(target=poison))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 90)
        assert not any(t.is_alive() for t in threads)
    finally:
        collector.stop()
    ok = (200, grpc.StatusCode.OK)
    bad = [o for o in outcomes if o[2] not in ok]
    assert not bad, f"{len(bad)} of {len(outcomes)} requests not OK, e.g. {bad[:3]}"
    valid_spans = sum(spans for kind, spans, _ in outcomes if kind == "valid")
    poison_spans = sum(spans for kind, spans, _ in outcomes if kind == "poison")
    assert valid_spans >= CLIENTS * SPANS_PER_REQUEST and poison_spans >= 2
    with psycopg.connect(dsn) as conn:
        stored_valid = conn.execute("SELECT count(*) FROM spans WHERE name LIKE 'c%'").fetchone()
        stored_poison = conn.execute(
            "SELECT count(*), min(attributes->>'payload') FROM spans WHERE name = 'poison'"
        ).fetchone()
    assert stored_valid == (valid_spans,)
    assert stored_poison == (poison_spans, "x")  # as protobuf read it: the ill-typed field skipped
