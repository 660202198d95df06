"""OTLP/JSON requests stored correctly, and duplicates or re-splits never change the table."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.collector_harness import RunningCollector
from tests.otlp_strategies import canonical
from tests.otlp_wire import grpc_export, http_post, make_request, make_span
from tracetables.collector.receivers._otlp_json import decode_trace_request_json, encode_trace_request_json
from tracetables.exporters.postgres.reader import read_request

Conn = psycopg.Connection[tuple[object, ...]]
DATA = Path(__file__).parent / "testdata" / "otlp_json"


@pytest.mark.parametrize("fixture", ["all-fields.json", "own-trace.json"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_http_json_fixture_stored_as_sent(fixture: str, encoding: str, collector: RunningCollector, conn: Conn) -> None:
    """A spec-shaped JSON request (nested kvlist/array, bytes, events, links) reads back from SQL as sent."""
    body = (DATA / fixture).read_bytes()
    headers = {"Content-Encoding": "gzip"} if encoding == "gzip" else {}
    reply = http_post(
        collector.http_port, gzip.compress(body) if encoding == "gzip" else body, "application/json", headers
    )
    assert reply.status == 200, reply.body
    assert "partialSuccess" not in reply.json()
    sent = decode_trace_request_json(body)
    assert canonical(read_request(conn)) == canonical(sent)


def test_http_json_values_queryable_in_sql(collector: RunningCollector, conn: Conn) -> None:
    """JSON attribute values land as plain jsonb: strings, ints, doubles, nested maps and arrays, bytes wrapped."""
    body = b"""{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",
      "spanId":"EEE19B7EC3C1B174","name":"checkout","kind":2,"startTimeUnixNano":"1544712660000000000",
      "endTimeUnixNano":1544712661000000000,"attributes":[
        {"key":"user","value":{"kvlistValue":{"values":[{"key":"id","value":{"intValue":"42"}},
          {"key":"roles","value":{"arrayValue":{"values":[{"stringValue":"admin"},{"boolValue":true}]}}}]}}},
        {"key":"ratio","value":{"doubleValue":0.5}},
        {"key":"blob","value":{"bytesValue":"AAEC"}}]}]}]}]}"""
    reply = http_post(collector.http_port, body, "application/json")
    assert reply.status == 200
    row = conn.execute(
        "SELECT encode(trace_id,'hex'), service_name, attributes->'user'->>'id', attributes->'user'->'roles',"
        " (attributes->>'ratio')::float8, attributes->'blob', start_time, kind FROM spans"
    ).fetchone()
    assert row is not None
    assert row[0] == "5b8efff798038103d269b633813fc60c"
    assert row[1] == "cart"
    assert row[2] == "42"
    assert row[3] == ["admin", True]
    assert row[4] == 0.5
    assert row[5] == {"@bytes": "AAEC"}
    assert row[6].isoformat() == "2018-12-13T14:51:00+00:00"
    assert row[7] == 2


def _spans(n: int) -> list:
    rng = random.Random(7)
    return [
        make_span(trace_id=bytes([1 + i % 3]) * 16, span_id=rng.randbytes(7) + bytes([i + 1]), name=f"op{i}", n=i)
        for i in range(n)
    ]


def _table(conn: Conn) -> list[tuple[object, ...]]:
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'spans' AND column_name <> 'received_at'"
            " ORDER BY ordinal_position"
        ).fetchall()
    ]
    return conn.execute(f"SELECT {', '.join(cols)} FROM spans ORDER BY trace_id, span_id").fetchall()


def test_duplicates_and_resplits_leave_identical_rows(collector: RunningCollector, conn: Conn) -> None:
    """Sent once whole; then twice more in other splits, orders, transports, in parallel: the rows do not change."""
    spans = _spans(30)
    reply = http_post(collector.http_port, make_request(*spans).SerializeToString())
    assert reply.status == 200
    once = _table(conn)
    assert len(once) == 30

    rng = random.Random(11)
    shuffled = spans[:]
    rng.shuffle(shuffled)
    # Re-send in uneven chunks, over both transports, with a span repeated inside one request.
    chunks = [shuffled[:1], shuffled[1:13] + shuffled[1:3], shuffled[13:]]
    for i, chunk in enumerate(chunks):
        body = make_request(*chunk).SerializeToString()
        if i % 2:
            code, _, _ = grpc_export(collector.grpc_port, body)
            assert code == grpc.StatusCode.OK
        else:
            assert http_post(collector.http_port, body).status == 200
    assert _table(conn) == once

    from concurrent.futures import ThreadPoolExecutor

    bodies = [make_request(*spans[i::5]).SerializeToString() for i in range(5)] * 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda b: http_post(collector.http_port, b).status, bodies))
    assert statuses == [200] * len(bodies)
    assert _table(conn) == once


def test_same_span_in_one_request_twice_stored_once(collector: RunningCollector, conn: Conn) -> None:
    """Duplicates inside a single request (one COPY) are not an error: one row."""
    span = make_span()
    reply = http_post(collector.http_port, make_request(span, span, span).SerializeToString())
    assert reply.status == 200
    assert len(_table(conn)) == 1


def test_json_encoding_round_trips_through_store(collector: RunningCollector, conn: Conn) -> None:
    """What the store reads back, encoded as OTLP/JSON and sent again, is a duplicate: nothing changes."""
    reply = http_post(collector.http_port, (DATA / "all-fields.json").read_bytes(), "application/json")
    assert reply.status == 200
    before = _table(conn)
    again = encode_trace_request_json(read_request(conn))
    assert http_post(collector.http_port, again, "application/json").status == 200
    assert _table(conn) == before
    assert isinstance(decode_trace_request_json(again), ExportTraceServiceRequest)


def test_concurrent_requests_share_group_commits(dsn: str) -> None:
    """Forty requests arriving while both writers are busy are committed together, each acknowledged after it."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tests.collector_harness import BASE_CONFIG, start_collector
    from tracetables.exporters.postgres.exporter import PostgresExporter

    # A long batch timeout: the gathering is not cut while the requests trickle in, however
    # slowly a loaded machine starts the 40 client threads.
    collector = start_collector(dsn, BASE_CONFIG.replace("timeout: 20ms", "timeout: 30s"))
    try:
        batcher = collector.service.pipelines["traces"]._batcher
        assert batcher is not None
        bodies = [make_request(make_span(trace_id=bytes([i + 1]) * 16)).SerializeToString() for i in range(40)]
        with psycopg.connect(dsn) as locker, ThreadPoolExecutor(max_workers=40) as pool:
            locker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # both writers will block
            futures = [pool.submit(http_post, collector.http_port, body) for body in bodies]
            deadline = time.monotonic() + 20
            while batcher.queued_spans < 40:  # every request is in: two writing, the rest gathered
                assert time.monotonic() < deadline, f"only {batcher.queued_spans} spans queued"
                time.sleep(0.01)
            assert not any(f.done() for f in futures)  # nothing acknowledged before its commit
            locker.rollback()
            statuses = [f.result(timeout=30).status for f in futures]
        assert statuses == [200] * 40
        exporter = collector.service.exporters["postgres"]
        assert isinstance(exporter, PostgresExporter)
        assert exporter.spans_written == 40
        assert exporter.transactions <= 4  # 2 blocked ones, then the gathered 38 in one or two
        with psycopg.connect(dsn) as check:
            assert check.execute("SELECT count(*) FROM spans").fetchone() == (40,)
    finally:
        collector.stop()


def test_http_json_with_charset_parameter_is_accepted(collector: RunningCollector, conn: Conn) -> None:
    """``application/json; charset=utf-8`` is JSON: media type parameters do not change the answer."""
    body = (DATA / "own-trace.json").read_bytes()
    reply = http_post(collector.http_port, body, "application/json; charset=utf-8")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert conn.execute("SELECT count(*) FROM spans").fetchone() == (2,)  # own-trace.json holds two spans
