"""Decoder–encoder parity: whatever protobuf accepts, the compiled encoder stores as protobuf read it.

The receivers accept a request when protobuf parses it. Protobuf keeps fields it does not
know — and known fields sent with the wrong wire type — as unknown fields and writes them
back out when the message is serialized. The compiled encoder reads those bytes: it must
skip such fields exactly as protobuf did, or a request the receiver acknowledged would fail
in the exporter (and with it every request batched beside it). Both paths are driven here
with the same generated and mutated bodies: the compiled encoder's COPY stream must equal the
Python reference's, which works on the parsed messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.otlp_strategies import requests
from tests.otlp_wire import make_request, make_span
from tracetables.exporters.postgres import encoder


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


@st.composite
def fields(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One wire field: a known or unknown number, any wire type, a well-formed value."""
    number = draw(st.one_of(st.integers(1, 20), st.integers(1, 2**29 - 1)))
    wire_type = draw(st.sampled_from([0, 1, 2, 5] + ([3] if depth < 3 else [])))
    if wire_type == 0:
        return _tag(number, 0) + _varint(draw(st.integers(0, 2**64 - 1)))
    if wire_type == 1:
        return _tag(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return _tag(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire_type == 2:
        data = draw(st.binary(max_size=12))
        return _tag(number, 2) + _varint(len(data)) + data
    inner = b"".join(draw(st.lists(fields(depth + 1), max_size=3)))
    return _tag(number, 3) + inner + _tag(number, 4)


def _messages(message: Message) -> Iterator[Message]:
    yield message
    for descriptor, value in message.ListFields():
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if descriptor.is_repeated:
            for item in value:
                yield from _messages(item)
        else:
            yield from _messages(value)


def _copy_rows(data: bytes) -> list[list[object]]:
    """A binary COPY stream's rows; jsonb fields parsed, so that a repeated key compares as
    PostgreSQL stores it (the last value wins), whichever encoder wrote the duplicate."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    at = 19
    rows: list[list[object]] = []
    while (count := int.from_bytes(data[at : at + 2], "big", signed=True)) != -1:
        at += 2
        row: list[object] = []
        for _ in range(count):
            size = int.from_bytes(data[at : at + 4], "big", signed=True)
            at += 4
            value = None if size < 0 else data[at : at + size]
            at += max(size, 0)
            if value is not None and value[:1] == b"\x01" and value[1:2] in (b"{", b"["):
                row.append(json.loads(value[1:]))
            else:
                row.append(value)
        rows.append(row)
    assert at + 2 == len(data)
    return rows


def _assert_same_encoding(payload: bytes) -> None:
    module = encoder._fastrows
    assert module is not None, "the C encoder was not built by the install"
    reference = encoder.encode_request_python(payload)
    data, rows, keys = module.encode(payload)  # never "malformed": protobuf parsed these bytes
    assert rows == reference.rows
    assert keys == reference.keys
    if data != reference.data:  # only a repeated attribute key may make the bytes differ
        assert _copy_rows(data) == _copy_rows(reference.data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), extras=st.lists(st.tuples(st.integers(0, 10_000), fields()), min_size=1, max_size=6))
def test_fields_protobuf_keeps_as_unknown_are_skipped_alike(
    request: ExportTraceServiceRequest, extras: list[tuple[int, bytes]]
) -> None:
    """Unknown and ill-typed fields planted in any message (AnyValue, KeyValue, Span, ...) encode alike."""
    for where, field in extras:
        targets = list(_messages(request))
        target = targets[where % len(targets)]
        try:
            target.MergeFromString(field)  # what the receiver's parse would have kept
        except DecodeError:  # e.g. a known string field given invalid UTF-8: the receiver refuses it
            continue
    payload = request.SerializeToString()
    try:
        ExportTraceServiceRequest.FromString(payload)  # the receiver's parse: what fails it never gets further
    except DecodeError:
        return
    _assert_same_encoding(payload)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), data=st.data())
def test_mutated_bodies_protobuf_accepts_encode_alike(request: ExportTraceServiceRequest, data: st.DataObject) -> None:
    """Bit flips, cuts and inserted bytes: every body protobuf parses is stored as protobuf read it."""
    body = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del body[at:]
        elif op == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and body:
            del body[at]
    try:
        parsed = ExportTraceServiceRequest.FromString(bytes(body))
    except (DecodeError, RecursionError, ValueError):
        return  # the receiver answers 400; nothing reaches the encoder
    _assert_same_encoding(parsed.SerializeToString())


def test_the_poison_value_from_the_fuzzer_is_skipped() -> None:
    """An AnyValue holding kvlist_value (field 6) as a varint: protobuf keeps "x" and an unknown field."""
    span = make_span(name="poison")
    span.attributes.add(key="k").value.MergeFromString(bytes.fromhex("0a01783022"))
    assert span.attributes[-1].value.string_value == "x"
    payload = make_request(span).SerializeToString()
    assert bytes.fromhex("3022") in payload  # the ill-typed field travels on to the encoder
    _assert_same_encoding(payload)


def test_an_unknown_group_is_skipped() -> None:
    """Groups (wire types 3 and 4) are not OTLP, but protobuf keeps them; so does the encoder."""
    span = make_span(name="grouped")
    span.MergeFromString(_tag(99, 3) + _tag(1, 0) + _varint(5) + _tag(99, 4))
    payload = make_request(span).SerializeToString()
    assert _tag(99, 3) in payload
    _assert_same_encoding(payload)
