"""Bad input gets the documented status, writes nothing, and leaves the collector serving.

Each test sends one kind of bad request over a real socket, checks the answer, checks
that no span was stored, then sends a good request and finds it stored.
"""

from __future__ import annotations

import gzip
import json

import grpc
import psycopg
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.collector_harness import RunningCollector
from tests.otlp_strategies import canonical
from tests.otlp_wire import deep_kvlist_request, grpc_export, http_post, make_request, make_span
from tracetables.exporters.postgres.reader import read_request

Conn = psycopg.Connection[tuple[object, ...]]
MIB = 1024 * 1024


def span_count(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM spans").fetchone()
    assert row is not None
    return int(str(row[0]))


def assert_still_serving(collector: RunningCollector, conn: Conn) -> None:
    """A good request after the bad one is stored."""
    before = span_count(conn)
    good = make_request(make_span(trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8, name="after")).SerializeToString()
    reply = http_post(collector.http_port, good)
    assert reply.status == 200
    code, _, _ = grpc_export(
        collector.grpc_port, make_request(make_span(trace_id=b"\x0c" * 16, name="after")).SerializeToString()
    )
    assert code == grpc.StatusCode.OK
    assert span_count(conn) == before + 2


def http_status_body(reply_body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(reply_body)


class TestMalformed:
    """Requests that cannot be decoded are refused whole: 400 / INVALID_ARGUMENT."""

    def test_http_truncated_protobuf_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """A protobuf body cut in the middle of a field gets 400 with a google.rpc.Status body."""
        body = make_request(make_span(), make_span(span_id=b"\x03" * 8)).SerializeToString()
        reply = http_post(collector.http_port, body[: len(body) // 2])
        assert reply.status == 400
        status = http_status_body(reply.body)
        assert status.code == code_pb2.INVALID_ARGUMENT and "protobuf" in status.message
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_grpc_truncated_protobuf_is_invalid_argument(self, collector: RunningCollector, conn: Conn) -> None:
        """The same over gRPC gets INVALID_ARGUMENT."""
        body = make_request(make_span()).SerializeToString()
        code, _, details = grpc_export(collector.grpc_port, body[:-3])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "protobuf" in details
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_garbage_json_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """A JSON body that is not JSON gets 400 with a JSON Status body."""
        reply = http_post(collector.http_port, b'{"resourceSpans": [', "application/json")
        assert reply.status == 400
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json()["code"] == code_pb2.INVALID_ARGUMENT
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    @pytest.mark.parametrize(
        "body",
        [
            b"[1, 2, 3]",
            b'{"resourceSpans": 5}',
            b'{"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]}',
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"a": 1}}]}]}]}',
        ],
        ids=["top-level-list", "number-for-list", "string-for-span", "object-for-name"],
    )
    def test_http_json_of_wrong_shape_is_400(self, body: bytes, collector: RunningCollector, conn: Conn) -> None:
        """Valid JSON that is not an ExportTraceServiceRequest gets 400."""
        reply = http_post(collector.http_port, body, "application/json")
        assert reply.status == 400, reply.body
        assert reply.json()["code"] == code_pb2.INVALID_ARGUMENT
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_invalid_utf8_in_protobuf_string_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """A span name that is not UTF-8 makes the protobuf invalid: 400."""
        body = make_request(make_span(name="NAME")).SerializeToString().replace(b"NAME", b"N\xff\xfeE")
        reply = http_post(collector.http_port, body)
        assert reply.status == 400
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_grpc_invalid_utf8_in_attribute_is_invalid_argument(self, collector: RunningCollector, conn: Conn) -> None:
        """Invalid UTF-8 in an attribute value over gRPC: INVALID_ARGUMENT."""
        body = make_request(make_span(user="VALUE")).SerializeToString().replace(b"VALUE", b"V\xc3\x28UE")
        code, _, _ = grpc_export(collector.grpc_port, body)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_invalid_utf8_in_json_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """A JSON body with bytes that are not UTF-8: 400."""
        body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe"}]}]}]}'
        reply = http_post(collector.http_port, body, "application/json")
        assert reply.status == 400
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    @pytest.mark.parametrize("transport", ["http", "grpc"])
    def test_kvlist_nested_10000_deep_is_refused(self, transport: str, collector: RunningCollector, conn: Conn) -> None:
        """An attribute value nested 10,000 kvlists deep is refused whole, without a crash."""
        body = deep_kvlist_request(10_000)
        if transport == "http":
            reply = http_post(collector.http_port, body)
            assert reply.status == 400
        else:
            code, _, _ = grpc_export(collector.grpc_port, body)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_json_nested_10000_deep_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """The same depth in OTLP/JSON: 400."""
        value: dict[str, object] = {"stringValue": "leaf"}
        text = json.dumps(value)
        for _ in range(10_000):
            text = '{"kvlistValue": {"values": [{"key": "k", "value": ' + text + "}]}}"
        body = (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
            + "01" * 16
            + '", "spanId": "'
            + "02" * 8
            + '", "name": "x", "attributes": [{"key": "deep", "value": '
            + text
            + "}]}]}]}]}"
        )
        reply = http_post(collector.http_port, body.encode(), "application/json")
        assert reply.status == 400
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)


class TestTransportLimits:
    """Content types, encodings and sizes."""

    @pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/grpc"])
    def test_http_unknown_content_type_is_415(self, content_type: str, collector: RunningCollector, conn: Conn) -> None:
        """Only application/x-protobuf and application/json are accepted: 415 otherwise."""
        reply = http_post(collector.http_port, make_request(make_span()).SerializeToString(), content_type)
        assert reply.status == 415
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_unknown_content_encoding_is_415(self, collector: RunningCollector, conn: Conn) -> None:
        """Content-Encoding other than gzip or identity: 415."""
        reply = http_post(
            collector.http_port, make_request(make_span()).SerializeToString(), headers={"Content-Encoding": "zstd"}
        )
        assert reply.status == 415
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_body_over_limit_is_413(self, collector: RunningCollector, conn: Conn) -> None:
        """A body over 20 MiB gets 413 before it is read whole."""
        reply = http_post(collector.http_port, b"\x00" * (20 * MIB + 1))
        assert reply.status == 413
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_gzip_bomb_is_413(self, collector: RunningCollector, conn: Conn) -> None:
        """1 GiB of zeros compressed to about 1 MiB: refused at the limit, not inflated in memory."""
        bomb = gzip.compress(b"\x00" * (64 * MIB), compresslevel=9)
        # Concatenate the compressed stream's payload by inflating a larger run lazily is not
        # needed: 64 MiB inflated is over the 20 MiB limit already, and its 64 KiB body is small.
        assert len(bomb) < MIB
        reply = http_post(collector.http_port, bomb, headers={"Content-Encoding": "gzip"})
        assert reply.status == 413
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_corrupt_gzip_is_400(self, collector: RunningCollector, conn: Conn) -> None:
        """A body that claims gzip but is not: 400."""
        reply = http_post(collector.http_port, b"not gzip at all", headers={"Content-Encoding": "gzip"})
        assert reply.status == 400
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_http_gzip_request_is_accepted(self, collector: RunningCollector, conn: Conn) -> None:
        """A well-formed gzip body is decoded and stored (the control for the two tests above)."""
        body = gzip.compress(make_request(make_span()).SerializeToString())
        reply = http_post(collector.http_port, body, headers={"Content-Encoding": "gzip"})
        assert reply.status == 200
        assert span_count(conn) == 1

    def test_grpc_message_over_limit_is_resource_exhausted(self, collector: RunningCollector, conn: Conn) -> None:
        """A gRPC message over 4 MiB: RESOURCE_EXHAUSTED."""
        span = make_span()
        span.attributes.append(KeyValue(key="big", value=AnyValue(string_value="x" * (5 * MIB))))
        code, _, _ = grpc_export(collector.grpc_port, make_request(span).SerializeToString())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_grpc_gzip_bomb_is_resource_exhausted(self, collector: RunningCollector, conn: Conn) -> None:
        """A gzip-compressed gRPC message that inflates past 4 MiB: RESOURCE_EXHAUSTED."""
        span = make_span()
        span.attributes.append(KeyValue(key="zeros", value=AnyValue(string_value="0" * (64 * MIB))))
        code, _, _ = grpc_export(collector.grpc_port, make_request(span).SerializeToString(), grpc.Compression.Gzip)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)


class TestRejectedSpans:
    """Well-formed requests with spans the store cannot take: those spans alone are refused."""

    @pytest.mark.parametrize(
        ("trace_id", "span_id", "words"),
        [
            (b"\x01" * 15, b"\x02" * 8, "trace_id"),
            (b"\x01" * 16, b"", "span_id"),
            (b"\x00" * 16, b"\x02" * 8, "trace_id"),
            (b"\x01" * 16, b"\x02" * 9, "span_id"),
        ],
        ids=["15-byte-trace-id", "empty-span-id", "zero-trace-id", "9-byte-span-id"],
    )
    def test_wrong_id_length_is_rejected_by_partial_success(
        self, trace_id: bytes, span_id: bytes, words: str, collector: RunningCollector, conn: Conn
    ) -> None:
        """A span with an invalid id is reported in partial_success and not stored; its good neighbour is."""
        bad = make_span(trace_id=trace_id, span_id=span_id, name="bad")
        good = make_span(trace_id=b"\x05" * 16, span_id=b"\x06" * 8, name="good")
        code, reply, _ = grpc_export(collector.grpc_port, make_request(bad, good).SerializeToString())
        assert code == grpc.StatusCode.OK
        response = ExportTraceServiceResponse.FromString(reply)
        assert response.partial_success.rejected_spans == 1
        assert words in response.partial_success.error_message
        names = [r[0] for r in conn.execute("SELECT name FROM spans").fetchall()]
        assert names == ["good"]
        assert_still_serving(collector, conn)

    def test_http_json_15_byte_trace_id_is_rejected(self, collector: RunningCollector, conn: Conn) -> None:
        """In OTLP/JSON too: a 30-hex-digit trace id is a rejected span, answered in JSON."""
        body = json.dumps(
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{"traceId": "01" * 15, "spanId": "02" * 8, "name": "bad"}]}]}
                ]
            }
        ).encode()
        reply = http_post(collector.http_port, body, "application/json")
        assert reply.status == 200
        assert reply.json()["partialSuccess"]["rejectedSpans"] in ("1", 1)
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    def test_100000_attributes_on_one_span_is_rejected(self, collector: RunningCollector, conn: Conn) -> None:
        """A span with 100,000 attributes is over the limit: rejected, nothing stored."""
        span = make_span()
        span.attributes.extend(KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(100_000))
        reply = http_post(collector.http_port, make_request(span).SerializeToString())
        assert reply.status == 200
        response = ExportTraceServiceResponse.FromString(reply.body)
        assert response.partial_success.rejected_spans == 1
        assert "100000 attributes" in response.partial_success.error_message
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)

    @pytest.mark.parametrize("where", ["name", "attribute", "attribute-key", "event", "resource"])
    def test_nul_character_is_stored_and_reads_back_exactly(
        self, where: str, collector: RunningCollector, conn: Conn
    ) -> None:
        """A NUL anywhere is no reason to refuse a valid span: stored escaped, read back as sent."""
        span = make_span(name="bad\x00name" if where == "name" else "nul")
        if where == "attribute":
            span.attributes.append(KeyValue(key="k", value=AnyValue(string_value="a\x00b")))
        elif where == "attribute-key":
            span.attributes.append(KeyValue(key="k\x00", value=AnyValue(int_value=1)))
        elif where == "event":
            span.events.add(name="e\x00")
        good = make_span(trace_id=b"\x05" * 16, span_id=b"\x06" * 8, name="good")
        request = make_request(span, good, service="svc\x00x" if where == "resource" else "svc")
        reply = http_post(collector.http_port, request.SerializeToString())
        assert reply.status == 200
        response = ExportTraceServiceResponse.FromString(reply.body)
        assert response.partial_success.rejected_spans == 0, response.partial_success.error_message
        assert canonical(read_request(conn)) == canonical(request)
        assert_still_serving(collector, conn)

    def test_literal_backslash_u0000_text_is_stored(self, collector: RunningCollector, conn: Conn) -> None:
        """The six characters \\u0000 are ordinary text, not a NUL: stored as sent."""
        span = make_span()
        span.attributes.append(KeyValue(key="text", value=AnyValue(string_value="\\u0000")))
        reply = http_post(collector.http_port, make_request(span).SerializeToString())
        assert reply.status == 200
        assert ExportTraceServiceResponse.FromString(reply.body).partial_success.rejected_spans == 0
        row = conn.execute("SELECT attributes->>'text' FROM spans").fetchone()
        assert row == ("\\u0000",)

    @pytest.mark.parametrize("owner", ["resource", "scope"])
    def test_100000_resource_or_scope_attributes_reject_their_spans(
        self, owner: str, collector: RunningCollector, conn: Conn
    ) -> None:
        """A resource or scope over the attribute limit takes its spans with it; another group is stored."""
        request = make_request(make_span(name="bad"))
        target = (
            request.resource_spans[0].resource
            if owner == "resource"
            else request.resource_spans[0].scope_spans[0].scope
        )
        target.attributes.extend(KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(100_000))
        request.resource_spans.add().scope_spans.add().spans.append(make_span(span_id=b"\x09" * 8, name="good"))
        reply = http_post(collector.http_port, request.SerializeToString())
        assert reply.status == 200
        response = ExportTraceServiceResponse.FromString(reply.body)
        assert response.partial_success.rejected_spans == 1
        assert f"the {owner} has 1000" in response.partial_success.error_message  # 100,000 (+ service.name)
        assert [r[0] for r in conn.execute("SELECT name FROM spans").fetchall()] == ["good"]
        assert_still_serving(collector, conn)


class TestHttpRouting:
    """Only POST on the traces path is served."""

    def test_wrong_path_is_404_and_get_is_405(self, collector: RunningCollector, conn: Conn) -> None:
        """A POST elsewhere gets 404; a GET on /v1/traces gets 405; nothing is stored."""
        import http.client

        assert http_post(collector.http_port, b"", path="/v1/metrics").status == 404
        client = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=30)
        try:
            client.request("GET", "/v1/traces")
            assert client.getresponse().status == 405
        finally:
            client.close()
        assert span_count(conn) == 0
        assert_still_serving(collector, conn)


def test_rejected_and_malformed_values_never_reach_the_logs(
    collector: RunningCollector, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    """Attribute values of refused spans and malformed bodies appear in no log record and no error message."""
    import logging

    secret = "SECRET-4242-do-not-log"
    caplog.set_level(logging.DEBUG)
    refused = make_span(span_id=b"\x02" * 9, name="n")  # a 9-byte span id: refused
    refused.attributes.append(KeyValue(key="card", value=AnyValue(string_value=secret)))
    replies = [http_post(collector.http_port, make_request(refused).SerializeToString())]
    truncated = make_request(make_span(card=secret)).SerializeToString()
    replies.append(http_post(collector.http_port, truncated[:-4]))
    bad_json = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"x": secret}}]}]}]}).encode()
    replies.append(http_post(collector.http_port, bad_json, "application/json"))
    bad_hex = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": secret}]}]}]}).encode()
    replies.append(http_post(collector.http_port, bad_hex, "application/json"))
    assert [r.status for r in replies] == [200, 400, 400, 400]
    assert all(secret.encode() not in r.body for r in replies)
    assert secret not in caplog.text
    assert span_count(conn) == 0
