"""Tests for the OTLP/HTTP JSON decoder and encoder of trace export requests."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    EntityRef,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tracetables.collector.receivers._otlp_json import (
    OtlpJsonError,
    decode_trace_request_json,
    encode_trace_request_json,
)

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "otlp_json"
SECRET = "S3CRET-VALUE"  # planted in bad bodies: must never appear in an error message
SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"  # the span of _one_span()
VALUE_PATH = f"{SPAN_PATH}.attributes[0].value"  # the value of _attr()
RS0, SS0 = "resourceSpans[0]", "resourceSpans[0].scopeSpans[0]"


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _one_span(**span: Any) -> dict[str, Any]:
    """A request whose only span (resourceSpans[0].scopeSpans[0].spans[0]) is ``span``."""
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def _attr(value: dict[str, Any]) -> dict[str, Any]:
    """A request with one span carrying one attribute ``a`` whose AnyValue is ``value``."""
    return _one_span(attributes=[{"key": "a", "value": value}])


def _attrs(key_values: Any) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in key_values}


def _nested_kvlist(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(levels):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


def _first_span(obj: Any) -> Span:
    """Decodes ``obj`` (as a JSON body) and returns resourceSpans[0].scopeSpans[0].spans[0]."""
    span: Span = decode_trace_request_json(_body(obj)).resource_spans[0].scope_spans[0].spans[0]
    return span


def _first_value(obj: Any) -> AnyValue:
    """Decodes ``obj`` and returns the value of the first span's first attribute."""
    return _first_span(obj).attributes[0].value


def _decode_error(body: bytes) -> str:
    with pytest.raises(OtlpJsonError) as info:
        decode_trace_request_json(body)
    return str(info.value)


# --- valid bodies -----------------------------------------------------------


def test_decode_own_trace_fixture_matches_its_content() -> None:
    """Our spec-written fixture (upper-case hex ids, string int64s, enum ints) decodes field by field."""
    request = decode_trace_request_json((TESTDATA / "own-trace.json").read_bytes())
    (resource_spans,) = request.resource_spans
    resource = _attrs(resource_spans.resource.attributes)
    assert resource["service.name"].string_value == "tracetables.fixture"
    assert resource["service.instance.number"].int_value == 7
    assert resource["host.cpu.share"].double_value == 0.25
    assert resource["deployment.canary"].HasField("bool_value") and not resource["deployment.canary"].bool_value
    assert resource["build.digest"].bytes_value == bytes.fromhex("deadbeef")
    assert [v.WhichOneof("value") for v in resource["team.owners"].array_value.values] == ["string_value", "int_value"]
    region = {kv.key: kv.value for kv in resource["region"].kvlist_value.values}
    assert region["name"].string_value == "north"
    assert [v.string_value for v in region["zones"].array_value.values] == ["a", "b"]
    assert resource_spans.resource.dropped_attributes_count == 1
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("tracetables.tests.fixture", "0.3.1")
    assert _attrs(scope_spans.scope.attributes)["fixture.author"].string_value == "tracetables tests"
    server, client = scope_spans.spans
    assert server.trace_id == client.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert server.span_id == bytes.fromhex("b7ad6b7169203331") and server.parent_span_id == b""
    assert client.parent_span_id == server.span_id and client.span_id == bytes.fromhex("00f067aa0ba902b7")
    assert (server.name, server.kind, client.kind) == ("POST /orders", Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)
    assert server.start_time_unix_nano == 1700000000000000000
    assert server.end_time_unix_nano == 1700000000250000000
    assert _attrs(server.attributes)["http.response.status_code"].int_value == 201
    (event,) = server.events
    assert (event.name, event.time_unix_nano) == ("order.validated", 1700000000100000000)
    assert _attrs(event.attributes)["order.items"].int_value == 3
    assert server.status.code == 1
    assert (client.status.code, client.status.message) == (2, "deadlock detected")
    assert (client.trace_state, client.dropped_attributes_count) == ("tt=1", 2)
    (link,) = client.links
    assert link.trace_id == bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    assert link.span_id == bytes.fromhex("53995c3f42cd8ad8")
    assert _attrs(link.attributes)["link.reason"].string_value == "retry of"


def test_decode_all_fields_fixture_sets_every_field() -> None:
    """The hand-written all-fields body decodes to exactly the values it spells out."""
    request = decode_trace_request_json((TESTDATA / "all-fields.json").read_bytes())
    (resource_spans,) = request.resource_spans
    assert resource_spans.schema_url == "https://opentelemetry.io/schemas/1.24.0"
    resource = resource_spans.resource
    assert resource.dropped_attributes_count == 1
    assert _attrs(resource.attributes)["service.name"].string_value == "checkout"
    assert _attrs(resource.attributes)["host.cpus"].int_value == 8
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.schema_url == "https://opentelemetry.io/schemas/1.21.0"
    scope = scope_spans.scope
    assert (scope.name, scope.version, scope.dropped_attributes_count) == ("io.example.http", "2.1.0", 2)
    assert _attrs(scope.attributes)["scope.enabled"].bool_value is True

    span, client = scope_spans.spans
    assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert span.span_id == bytes.fromhex("b7ad6b7169203331")
    assert span.parent_span_id == bytes.fromhex("00f067aa0ba902b7")
    assert span.trace_state == "congo=t61rcWkgMzE"
    assert span.flags == 769
    assert span.name == "GET /cart"
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1700000000000000000
    assert span.end_time_unix_nano == 1700000000250000000
    assert (span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count) == (3, 5, 7)
    assert (span.status.code, span.status.message) == (Status.STATUS_CODE_ERROR, "upstream timed out")

    attrs = _attrs(span.attributes)
    assert attrs["s"].string_value == "hello"
    assert attrs["empty.string"].WhichOneof("value") == "string_value"
    assert attrs["empty.string"].string_value == ""
    assert attrs["b"].WhichOneof("value") == "bool_value" and attrs["b"].bool_value is False
    assert attrs["i.string"].int_value == -(2**63)
    assert attrs["i.number"].int_value == 42
    assert attrs["d"].double_value == 2.5
    assert attrs["d.integral"].WhichOneof("value") == "double_value"
    assert attrs["d.integral"].double_value == 3.0
    assert attrs["bytes"].bytes_value == b"\x00\x01\x02\xff"
    assert attrs["empty.array"].WhichOneof("value") == "array_value"
    assert len(attrs["empty.array"].array_value.values) == 0
    assert attrs["empty.value"].WhichOneof("value") is None

    array = attrs["arr"].array_value.values
    kinds = [v.WhichOneof("value") for v in array]
    assert kinds == ["string_value", "int_value", "array_value", "kvlist_value"]
    assert (array[0].string_value, array[1].int_value) == ("x", 7)
    assert array[2].array_value.values[0].bool_value is True
    assert _attrs(array[3].kvlist_value.values)["in.array"].double_value == -1.25

    kvlist = _attrs(attrs["kv"].kvlist_value.values)
    assert kvlist["leaf"].bytes_value == b"hi"
    deeper = _attrs(kvlist["nested"].kvlist_value.values)["deeper"].array_value.values
    assert [v.int_value for v in deeper] == [1, 2]

    cache_miss, retry = span.events
    assert (cache_miss.time_unix_nano, cache_miss.name) == (1700000000100000000, "cache.miss")
    assert _attrs(cache_miss.attributes)["cache.key.length"].int_value == 12
    assert cache_miss.dropped_attributes_count == 4
    assert (retry.time_unix_nano, retry.name, len(retry.attributes)) == (1700000000200000000, "retry", 0)

    (link,) = span.links
    assert link.trace_id == bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    assert link.span_id == bytes.fromhex("00f067aa0ba902b7")
    assert link.trace_state == "rojo=00f067aa0ba902b7"
    assert _attrs(link.attributes)["link.reason"].string_value == "follows"
    assert (link.dropped_attributes_count, link.flags) == (6, 256)

    assert client.parent_span_id == b""
    assert client.kind == Span.SPAN_KIND_CLIENT
    assert client.status.code == Status.STATUS_CODE_OK
    assert client.end_time_unix_nano - client.start_time_unix_nano == 10_000_000


def test_decode_empty_object_is_an_empty_request() -> None:
    """``{}`` (and whitespace around it) is a valid request with no spans."""
    assert decode_trace_request_json(b" {} \n") == ExportTraceServiceRequest()


def test_decode_snake_case_field_names_are_accepted() -> None:
    """Original proto field names work like their lowerCamelCase JSON names."""
    body = {
        "resource_spans": [
            {
                "schema_url": "u",
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "0AF7651916CD43DD8448EB211C80319C",
                                "span_id": "b7ad6b7169203331",
                                "parent_span_id": "00f067aa0ba902b7",
                                "start_time_unix_nano": "5",
                                "dropped_attributes_count": 1,
                                "links": [{"span_id": "00000000000000ff", "trace_state": "a=b"}],
                                "attributes": [{"key": "k", "value": {"int_value": "9", "string_value": None}}],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (resource_spans,) = decode_trace_request_json(_body(body)).resource_spans
    assert resource_spans.schema_url == "u"
    span = resource_spans.scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert span.span_id == bytes.fromhex("b7ad6b7169203331")
    assert span.parent_span_id == bytes.fromhex("00f067aa0ba902b7")
    assert (span.start_time_unix_nano, span.dropped_attributes_count) == (5, 1)
    assert (span.links[0].span_id, span.links[0].trace_state) == (b"\x00" * 7 + b"\xff", "a=b")
    assert span.attributes[0].value.int_value == 9


def test_decode_unknown_fields_are_ignored() -> None:
    """Unknown fields at every level, of any JSON type, are skipped without error."""
    body = {
        "futureTopLevel": [1, {"x": None}],
        "resourceSpans": [
            {
                "newThing": {"deep": [[["x"]]]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "name": "n",
                                "someFutureField": "v",
                                "attributes": [{"key": "k", "value": {"futureValueKind": 1}, "x": True}],
                            }
                        ]
                    }
                ],
            }
        ],
    }
    span = _first_span(body)
    assert span.name == "n"
    assert span.attributes[0].key == "k"
    assert span.attributes[0].value.WhichOneof("value") is None


def test_decode_enums_accept_numbers_names_and_numeric_strings() -> None:
    """Enums decode from integers, from enum names, and from decimal strings; unknown numbers are kept."""
    cases = [(2, Span.SPAN_KIND_SERVER), ("SPAN_KIND_PRODUCER", Span.SPAN_KIND_PRODUCER), ("3", 3), (99, 99)]
    for raw, expected in cases:
        assert _first_span(_one_span(kind=raw)).kind == expected
    assert _first_span(_one_span(status={"code": "STATUS_CODE_ERROR"})).status.code == Status.STATUS_CODE_ERROR


def test_decode_unknown_enum_name_is_ignored() -> None:
    """An enum name this schema does not know leaves the field unset, like an unknown field."""
    span = _first_span(_one_span(kind="SPAN_KIND_FROM_THE_FUTURE", name="n"))
    assert (span.kind, span.name) == (Span.SPAN_KIND_UNSPECIFIED, "n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1544712660000000000", 1544712660000000000),
        (1544712660000000000, 1544712660000000000),
        ("18446744073709551615", 2**64 - 1),
        ("1e3", 1000),
        ("1.5e2", 150),
        (2.0, 2),
        ("0", 0),
    ],
)
def test_decode_uint64_accepts_strings_and_numbers(raw: Any, expected: int) -> None:
    """A fixed64 time decodes from a decimal string, a JSON number, or an integral exponent form."""
    assert _first_span(_one_span(startTimeUnixNano=raw)).start_time_unix_nano == expected


def test_decode_double_accepts_numbers_strings_and_special_values() -> None:
    """doubleValue decodes JSON numbers, numeric strings and the "NaN"/"Infinity"/"-Infinity" strings."""

    def double(raw: Any) -> float:
        value: float = _first_value(_attr({"doubleValue": raw})).double_value
        return value

    assert double(0.1) == 0.1
    assert double("-2.5") == -2.5
    assert math.isnan(double("NaN"))
    assert double("Infinity") == math.inf
    assert double("-Infinity") == -math.inf


def test_decode_bytes_value_accepts_standard_url_safe_and_unpadded_base64() -> None:
    """bytesValue is base64, standard or URL-safe alphabet, with or without padding."""
    for raw in ("+/8=", "-_8=", "-_8", "+/8"):
        assert _first_value(_attr({"bytesValue": raw})).bytes_value == b"\xfb\xff"


def test_decode_empty_id_string_is_an_absent_id() -> None:
    """An empty hex string decodes to empty bytes, i.e. no id."""
    span = _first_span(_one_span(traceId="", spanId="", parentSpanId=""))
    assert (span.trace_id, span.span_id, span.parent_span_id) == (b"", b"", b"")


def test_decode_does_not_validate_id_lengths() -> None:
    """A 15-byte trace id and a 3-byte span id decode as-is; rejecting them is a later step's job."""
    span = _first_span(_one_span(traceId="ab" * 15, spanId="0A0B0c"))
    assert (span.trace_id, span.span_id) == (b"\xab" * 15, b"\x0a\x0b\x0c")


def test_decode_null_means_field_default() -> None:
    """A JSON null for any field leaves that field at its default."""
    span = {"name": None, "traceId": None, "links": None, "status": None}
    body = {"resourceSpans": [{"resource": None, "scopeSpans": [{"spans": [span]}]}]}
    resource_spans = decode_trace_request_json(_body(body)).resource_spans[0]
    assert not resource_spans.HasField("resource")
    assert resource_spans.scope_spans[0].spans[0] == Span()


def test_decode_accepts_utf8_byte_order_mark_and_non_ascii_strings() -> None:
    """A leading UTF-8 BOM is tolerated and non-ASCII text decodes intact."""
    body = b"\xef\xbb\xbf" + json.dumps(_one_span(name="caf\u00e9 \U0001f600"), ensure_ascii=False).encode()
    request = decode_trace_request_json(body)
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "caf\u00e9 \U0001f600"


def test_decode_nesting_up_to_the_protobuf_limit_is_accepted_and_serializable() -> None:
    """The deepest nesting accepted (100 below the root) is exactly what binary protobuf also accepts."""
    # Root = depth 0; the attribute's AnyValue is at depth 5; a kvlist level adds 3, an array level 2.
    deepest = {"arrayValue": {"values": [_nested_kvlist(31)]}}  # innermost AnyValue at depth 100
    request = decode_trace_request_json(_body(_attr(deepest)))
    assert ExportTraceServiceRequest.FromString(request.SerializeToString()) == request
    message = _decode_error(_body(_attr(_nested_kvlist(32))))  # depth 101
    assert message.startswith(f"{VALUE_PATH}.kvlistValue.values[0]")
    assert message.endswith(".kvlistValue.values[0].value: nested more than 100 messages deep")
    with pytest.raises(DecodeError):  # protobuf's own decoder refuses the same depth
        ExportTraceServiceRequest.FromString(_protobuf_of_depth_101())


def _protobuf_of_depth_101() -> bytes:
    request = ExportTraceServiceRequest()
    value = request.resource_spans.add().scope_spans.add().spans.add().attributes.add(key="a").value
    for _ in range(32):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "leaf"
    return request.SerializeToString()


# --- invalid bodies ---------------------------------------------------------

ID_PATH = "resourceSpans[0].scopeSpans[1].spans[3]"


def _bad_id_body(field: str, raw: str, *, in_link: bool = False) -> bytes:
    span: dict[str, Any] = {"name": SECRET}
    if in_link:
        span["links"] = [{}, {field: raw}]
    else:
        span[field] = raw
    return _body({"resourceSpans": [{"scopeSpans": [{}, {"spans": [{}, {}, {}, span]}]}]})


@pytest.mark.parametrize("field", ["traceId", "spanId", "parentSpanId", "trace_id"])
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0af7651916cd43dd8448eb211c80319g", "not hex"),
        ("abc", "odd-length hex"),
        ("ab cd", "odd-length hex"),
        ("ab  cd", "not hex"),  # bytes.fromhex would skip the spaces
        ("0x00", "not hex"),
        ("\u00e9\u00e9", "not hex"),
    ],
)
def test_decode_invalid_span_id_names_the_field_path(field: str, raw: str, reason: str) -> None:
    """Non-hex or odd-length span ids fail with the id's field path and the reason."""
    json_name = {"trace_id": "traceId"}.get(field, field)
    assert _decode_error(_bad_id_body(field, raw)) == f"{ID_PATH}.{json_name}: {reason}"


@pytest.mark.parametrize("field", ["traceId", "spanId"])
def test_decode_invalid_link_id_names_the_field_path(field: str) -> None:
    """Link ids are hex too, and a bad one names the link's path."""
    path = f"{ID_PATH}.links[1].{field}"
    assert _decode_error(_bad_id_body(field, "abc", in_link=True)) == f"{path}: odd-length hex"
    assert _decode_error(_bad_id_body(field, "zz", in_link=True)) == f"{path}: not hex"


def test_decode_base64_ids_are_rejected() -> None:
    """Ids in proto3-JSON base64 form (not OTLP hex) are an error, not silently mis-decoded."""
    base64_id = base64.b64encode(bytes(range(16))).decode()
    assert _decode_error(_bad_id_body("traceId", base64_id)) == f"{ID_PATH}.traceId: not hex"


@pytest.mark.parametrize(
    "body", [b"", b"garbage", b"\x00\x01\x02", b'{"resourceSpans": [', b"{'a': 1}", b'{"a": 1} {}']
)
def test_decode_garbage_is_not_valid_json(body: bytes) -> None:
    """Bytes that are not JSON fail with a 'not valid JSON' reason and a position."""
    assert _decode_error(body).startswith("body is not valid JSON: ")


def test_decode_invalid_utf8_is_rejected() -> None:
    """A body that is not UTF-8 (e.g. Latin-1 or UTF-16) fails as such."""
    assert _decode_error(b'{"a": "caf\xe9"}') == "body is not valid UTF-8"
    assert _decode_error(b"\xff\xfe{\x00}\x00") == "body is not valid UTF-8"


@pytest.mark.parametrize("body", [b"[]", b"[{}]", b"5", b'"resourceSpans"', b"null", b"true"])
def test_decode_top_level_must_be_an_object(body: bytes) -> None:
    """Any JSON value other than an object at the top level is rejected."""
    assert _decode_error(body) == "body must be a JSON object"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_decode_rejects_non_standard_json_literals(literal: str) -> None:
    """Bare NaN/Infinity (accepted by Python's json module, not by JSON) are rejected."""
    body = json.dumps(_attr({"doubleValue": "X"})).replace('"X"', literal).encode()
    assert _decode_error(body) == f'body is not valid JSON: bare {literal} is not allowed, use "{literal}"'


ONEOF_TWICE = "more than one member of oneof value is set"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"resourceSpans": 5}, "resourceSpans: expected a JSON array"),
        ({"resourceSpans": {"scopeSpans": []}}, "resourceSpans: expected a JSON array"),
        ({"resourceSpans": [SECRET]}, "resourceSpans[0]: expected a JSON object"),
        ({"resourceSpans": [None]}, "resourceSpans[0]: null is not allowed in an array"),
        ({"resourceSpans": [{"resource": [SECRET]}]}, f"{RS0}.resource: expected a JSON object"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": SECRET}]}]}, f"{SS0}.spans: expected a JSON array"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [SECRET]}]}]}, f"{SPAN_PATH}: expected a JSON object"),
        ({"resourceSpans": [{"scopeSpans": [{"scope": 7}]}]}, f"{SS0}.scope: expected a JSON object"),
        (
            {"resourceSpans": [{"resource": {"entityRefs": [{"idKeys": ["a", 5]}]}}]},
            f"{RS0}.resource.entityRefs[0].idKeys[1]: expected a string",
        ),
        (_one_span(name=5), f"{SPAN_PATH}.name: expected a string"),
        (_one_span(name=[SECRET]), f"{SPAN_PATH}.name: expected a string"),
        (_one_span(traceId=12), f"{SPAN_PATH}.traceId: expected a string"),
        (_one_span(startTimeUnixNano=SECRET), f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
        (_one_span(startTimeUnixNano="1.5"), f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
        (_one_span(startTimeUnixNano=" 15"), f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
        (_one_span(startTimeUnixNano=True), f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
        (_one_span(startTimeUnixNano=-1), f"{SPAN_PATH}.startTimeUnixNano: value out of range"),
        (_one_span(endTimeUnixNano=str(2**64)), f"{SPAN_PATH}.endTimeUnixNano: value out of range"),
        (_one_span(flags=2**32), f"{SPAN_PATH}.flags: value out of range"),
        (_one_span(droppedEventsCount=1.5), f"{SPAN_PATH}.droppedEventsCount: expected an integer"),
        (_one_span(kind=1.5), f"{SPAN_PATH}.kind: expected an enum number or name"),
        (_one_span(kind=2**40), f"{SPAN_PATH}.kind: value out of range"),
        (_one_span(status={"code": [2]}), f"{SPAN_PATH}.status.code: expected an enum number or name"),
        (_one_span(events=[{"attributes": {}}]), f"{SPAN_PATH}.events[0].attributes: expected a JSON array"),
        (_one_span(links=[{}, SECRET]), f"{SPAN_PATH}.links[1]: expected a JSON object"),
        (_one_span(attributes=[{"key": "k", "value": SECRET}]), f"{VALUE_PATH}: expected a JSON object"),
        (_one_span(attributes=[{"key": 1}]), f"{SPAN_PATH}.attributes[0].key: expected a string"),
        (_attr({"boolValue": "true"}), f"{VALUE_PATH}.boolValue: expected true or false"),
        (_attr({"boolValue": 1}), f"{VALUE_PATH}.boolValue: expected true or false"),
        (_attr({"intValue": SECRET}), f"{VALUE_PATH}.intValue: expected an integer"),
        (_attr({"intValue": "9223372036854775808"}), f"{VALUE_PATH}.intValue: value out of range"),
        (_attr({"doubleValue": SECRET}), f"{VALUE_PATH}.doubleValue: expected a number"),
        (_attr({"doubleValue": True}), f"{VALUE_PATH}.doubleValue: expected a number"),
        (_attr({"bytesValue": SECRET + "!"}), f"{VALUE_PATH}.bytesValue: not base64"),
        (_attr({"bytesValue": "QQ=A"}), f"{VALUE_PATH}.bytesValue: not base64"),
        (_attr({"bytesValue": 5}), f"{VALUE_PATH}.bytesValue: expected a string"),
        (_attr({"arrayValue": {"values": [1]}}), f"{VALUE_PATH}.arrayValue.values[0]: expected a JSON object"),
        (_attr({"arrayValue": [SECRET]}), f"{VALUE_PATH}.arrayValue: expected a JSON object"),
        (
            _attr({"kvlistValue": {"values": [{"key": "k", "value": 3}]}}),
            f"{VALUE_PATH}.kvlistValue.values[0].value: expected a JSON object",
        ),
        (_attr({"stringValue": SECRET, "intValue": "1"}), f"{VALUE_PATH}.intValue: {ONEOF_TWICE}"),
        (_attr({"arrayValue": {}, "kvlistValue": {}}), f"{VALUE_PATH}.kvlistValue: {ONEOF_TWICE}"),
        (_one_span(traceId="00", trace_id="00"), f"{SPAN_PATH}.traceId: given twice, as traceId and trace_id"),
    ],
)
def test_decode_wrong_shapes_name_the_field_path(obj: dict[str, Any], message: str) -> None:
    """A value of the wrong JSON type or range fails with the field path and what was expected."""
    assert _decode_error(_body(obj)) == message


def test_decode_deep_nesting_of_10000_levels_is_rejected_not_crashing() -> None:
    """A kvlistValue nested 10,000 deep raises OtlpJsonError, not RecursionError."""
    opening = '{"kvlistValue":{"values":[{"key":"k","value":' * 10_000
    closing = "}]}}" * 10_000
    body = json.dumps(_attr({})).replace("{}", opening + "{}" + closing).encode()
    assert _decode_error(body) == "body is nested too deeply"


def test_decode_deep_arrays_beyond_the_protobuf_limit_are_rejected() -> None:
    """Nesting json.loads can parse but protobuf could not carry fails by depth, with a short path."""
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(300):
        value = {"arrayValue": {"values": [value]}}
    message = _decode_error(_body(_attr(value)))
    assert message.endswith(": nested more than 100 messages deep")
    assert len(message) < 200


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (_one_span(name=SECRET + "\ud800"), f"{SPAN_PATH}.name"),
        (_one_span(attributes=[{"key": "\udfff" + SECRET}]), f"{SPAN_PATH}.attributes[0].key"),
        (_attr({"stringValue": SECRET + "\ud83d"}), f"{VALUE_PATH}.stringValue"),
        ({"resourceSpans": [{"schemaUrl": "\udc00"}]}, "resourceSpans[0].schemaUrl"),
    ],
)
def test_decode_lone_surrogate_is_rejected(obj: dict[str, Any], path: str) -> None:
    """A JSON string escaping half a surrogate pair is not Unicode text and fails with its path."""
    body = _body(obj)
    assert b"\\ud" in body  # json.dumps escapes it, as a client would send it
    assert _decode_error(body) == f"{path}: not valid Unicode (lone surrogate)"


def test_decode_paired_surrogate_escape_is_accepted() -> None:
    """A correctly paired surrogate escape decodes to the astral character."""
    body = b'{"resourceSpans":[{"schemaUrl":"\\ud83d\\ude00"}]}'
    assert decode_trace_request_json(body).resource_spans[0].schema_url == "\U0001f600"


@pytest.mark.parametrize(
    "body",
    [
        _bad_id_body("traceId", SECRET),
        _bad_id_body("spanId", SECRET + "0", in_link=True),
        _body(_one_span(name=SECRET + "\ud800")),
        _body(_one_span(startTimeUnixNano=SECRET)),
        _body(_one_span(startTimeUnixNano="9" * 100)),
        _body(_attr({"doubleValue": SECRET})),
        _body(_attr({"bytesValue": SECRET + "~"})),
        _body(_attr({"boolValue": SECRET})),
        _body({"resourceSpans": [{"scopeSpans": [{"spans": SECRET}]}]}),
        _body({"resourceSpans": [{"scopeSpans": [{"spans": [SECRET]}]}]}),
        _body(SECRET),
        _body([SECRET]),
        ('{"a": "' + SECRET + '", "b": ' + SECRET + "}").encode(),
        ('{"a": "' + SECRET + '\t"}').encode(),
        ('{"a": "' + SECRET).encode(),
        SECRET.encode() + b"\xff",
        b'{"resourceSpans": 1' + b"0" * 5000 + b"}",
    ],
)
def test_decode_error_messages_never_echo_body_content(body: bytes) -> None:
    """Whatever is wrong, the error message is short and contains none of the body's values."""
    message = _decode_error(body)
    assert SECRET not in message
    assert len(message) < 200


def test_decode_errors_chain_the_underlying_cause() -> None:
    """OtlpJsonError keeps the original exception as __cause__ for logs and debugging."""
    with pytest.raises(OtlpJsonError) as info:
        decode_trace_request_json(b"{")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    assert isinstance(info.value, ValueError)


# --- encoding and round trips -----------------------------------------------


def test_encode_follows_otlp_json_conventions() -> None:
    """Encoding uses hex ids, lowerCamelCase names, integer enums and int64 as strings."""
    span = Span(
        trace_id=bytes.fromhex("0AF7651916CD43DD8448EB211C80319C"),
        span_id=b"\x00" * 7 + b"\x01",
        kind=Span.SPAN_KIND_CONSUMER,
        start_time_unix_nano=2**63,
        flags=256,
        links=[Span.Link(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8)],
        status=Status(code=Status.STATUS_CODE_ERROR),
        attributes=[
            KeyValue(key="b", value=AnyValue(bytes_value=b"\xfb\xff")),
            KeyValue(key="i", value=AnyValue(int_value=-3)),
        ],
    )
    scope_spans = ScopeSpans(spans=[span])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope_spans])])
    obj = json.loads(encode_trace_request_json(request))
    encoded = obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert encoded["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert encoded["spanId"] == "0000000000000001"
    assert encoded["kind"] == 5
    assert encoded["startTimeUnixNano"] == str(2**63)
    assert encoded["flags"] == 256
    assert encoded["links"] == [{"traceId": "ab" * 16, "spanId": "cd" * 8}]
    assert encoded["status"] == {"code": 2}
    assert encoded["attributes"] == [
        {"key": "b", "value": {"bytesValue": "+/8="}},
        {"key": "i", "value": {"intValue": "-3"}},
    ]
    assert "parentSpanId" not in encoded  # empty ids are omitted


@pytest.mark.parametrize("name", ["own-trace.json", "all-fields.json"])
def test_roundtrip_fixture_decode_encode_decode_is_stable(name: str) -> None:
    """Decoding a fixture, encoding it and decoding again gives the same request."""
    request = decode_trace_request_json((TESTDATA / name).read_bytes())
    assert decode_trace_request_json(encode_trace_request_json(request)) == request


def test_roundtrip_special_doubles() -> None:
    """NaN and infinities survive encoding (as strings) and decoding."""
    values = [math.nan, math.inf, -math.inf]
    attributes = [KeyValue(key=str(v), value=AnyValue(double_value=v)) for v in values]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(resource=Resource(attributes=attributes))])
    decoded = decode_trace_request_json(encode_trace_request_json(request)).resource_spans[0].resource.attributes
    assert math.isnan(decoded[0].value.double_value)
    assert [kv.value.double_value for kv in decoded[1:]] == [math.inf, -math.inf]


_texts = st.text(max_size=6)
_i32 = st.integers(-(2**31), 2**31 - 1)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_ids = st.binary(max_size=17)  # any length: the codec must not care


def _any_values() -> st.SearchStrategy[AnyValue]:
    leaves = st.one_of(
        st.just(AnyValue()),
        _texts.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
        _i32.map(lambda i: AnyValue(string_value_strindex=i)),
    )

    def containers(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
        key_values = st.lists(st.builds(KeyValue, key=_texts, value=children), max_size=3)
        return st.one_of(
            st.lists(children, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
            key_values.map(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs))),
        )

    return st.recursive(leaves, containers, max_leaves=8)


_attributes = st.lists(
    st.builds(KeyValue, key=_texts, value=_any_values()) | st.builds(KeyValue, key_strindex=_i32), max_size=3
)
_links = st.builds(
    Span.Link,
    trace_id=_ids,
    span_id=_ids,
    trace_state=_texts,
    attributes=_attributes,
    dropped_attributes_count=_u32,
    flags=_u32,
)
_events = st.builds(Span.Event, time_unix_nano=_u64, name=_texts, attributes=_attributes, dropped_attributes_count=_u32)
_spans = st.builds(
    Span,
    trace_id=_ids,
    span_id=_ids,
    trace_state=_texts,
    parent_span_id=_ids,
    flags=_u32,
    name=_texts,
    kind=st.integers(0, 7),
    start_time_unix_nano=_u64,
    end_time_unix_nano=_u64,
    attributes=_attributes,
    dropped_attributes_count=_u32,
    events=st.lists(_events, max_size=2),
    dropped_events_count=_u32,
    links=st.lists(_links, max_size=2),
    dropped_links_count=_u32,
    status=st.builds(Status, message=_texts, code=st.integers(0, 3)),
)
_resources = st.builds(
    Resource,
    attributes=_attributes,
    dropped_attributes_count=_u32,
    entity_refs=st.lists(
        st.builds(
            EntityRef,
            schema_url=_texts,
            type=_texts,
            id_keys=st.lists(_texts, max_size=2),
            description_keys=st.lists(_texts, max_size=2),
        ),
        max_size=2,
    ),
)
_scope_spans = st.builds(
    ScopeSpans,
    scope=st.builds(
        InstrumentationScope, name=_texts, version=_texts, attributes=_attributes, dropped_attributes_count=_u32
    ),
    spans=st.lists(_spans, max_size=3),
    schema_url=_texts,
)
_requests = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            ResourceSpans, resource=_resources, scope_spans=st.lists(_scope_spans, max_size=2), schema_url=_texts
        ),
        max_size=2,
    ),
)


@settings(max_examples=150, deadline=None)
@given(_requests)
def test_roundtrip_generated_requests_survive_encode_then_decode(request: ExportTraceServiceRequest) -> None:
    """Any request (all fields, nested values, odd id lengths) decodes back to itself after encoding."""
    assert decode_trace_request_json(encode_trace_request_json(request)) == request
