"""Seeded mutations of valid OTLP trace requests: what tests/test_fuzz.py and bench/fuzz.py send.

``Mutator(seed).case()`` returns one :class:`Case` — a transport (OTLP/HTTP or OTLP/gRPC),
a body, and for HTTP a content type and encoding — made from a small corpus of valid
requests (the OTLP/JSON fixtures in ``testdata/otlp_json`` and a few requests built here
that carry what the default processors act on: flow details and state, URLs with
secrets, headers). The same seed gives the same cases in the same order.

Kinds of mutation (the case's ``mutation`` names them, e.g. ``pb.ill_typed+bit_flip``):

- bytes, on protobuf and JSON bodies alike: bit flips, truncation, byte insertion and
  deletion, a chunk copied elsewhere;
- protobuf, on the parsed wire format (the message descriptors say which length-delimited
  field is a message): a field duplicated or dropped, a known field planted with the wrong
  wire type (e.g. an AnyValue's kvlist_value as a varint), a length prefix that lies (up
  to 2**64 - 1), an overlong varint, a scalar set to an edge value, an attribute value or
  key replaced by a tricky one (deep JSON text under ``flow.node.details``, huge strings,
  NaN, nesting on either side of protobuf's limit of 100), an attribute value replaced
  through ``MergeFromString`` by AnyValue bytes with ill-typed fields (``0a 01 78 30 22``:
  a string_value, then kvlist_value as a varint);
- JSON, on the parsed body: a value replaced by one of another type or by a raw token
  (``1e999999``, 5000 digits, ``NaN``), a key dropped, a camelCase key given again in
  snake_case, an unknown key;
- HTTP transport: a wrong or mismatched content type, an unknown content encoding, bad
  gzip, valid gzip of garbage, truncated gzip, gzip with trailing bytes, gzip twice, and
  bodies over the limit after decompression; gRPC: a mutated message, gzip-compressed by
  the client now and then, and a message over the receive limit.
"""

from __future__ import annotations

import gzip
import http.client
import json
import math
import random
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracetables.collector.receivers._otlp_json import decode_trace_request_json, encode_trace_request_json
from tracetables.instrumentation import conventions as cv

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
HTTP = "http"
GRPC = "grpc"
MIB = 1024 * 1024
EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
JSON_FIXTURES = Path(__file__).parent / "testdata" / "otlp_json"

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
CONTROL_SPANS = 3

# Attribute keys the default processors look at, and some odd ones.
KEYS = (
    cv.FLOW_NODE_DETAILS,
    cv.FLOW_STATE_BEFORE,
    cv.FLOW_STATE_AFTER,
    cv.FLOW_CONTEXT_SNAPSHOT,
    cv.FLOW_TRACE_LEVEL,
    cv.FLOW_ID,
    cv.FLOW_ROLE,
    cv.FLOW_CALL_REQUEST,
    cv.FLOW_CALL_RESPONSE,
    "tracetables.masked",
    "url.full",
    "http.url",
    "url.query",
    "http.request.header.authorization",
    "http.request.body",
    "user.password",
    "card_number",
    "",
    "\x00",
    "k" * 5000,
)


@dataclass(frozen=True, slots=True)
class Case:
    """One request to send: over ``transport``, ``body`` as is (gRPC compresses it itself
    when ``grpc_gzip``); for HTTP with ``content_type`` and ``content_encoding`` (None: no
    header)."""

    transport: str
    mutation: str
    body: bytes
    content_type: str | None = PROTOBUF
    content_encoding: str | None = None
    grpc_gzip: bool = False


# --- protobuf wire format ---------------------------------------------------------------


def varint(n: int) -> bytes:
    """Base-128 varint of a non-negative ``n`` (negative: as protobuf, 64-bit two's complement)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def overlong_varint(n: int, total: int) -> bytes:
    """``n`` as a varint padded to ``total`` bytes with empty continuation bytes (over 10:
    more than protobuf allows)."""
    short = bytearray(varint(n))
    while len(short) < total:
        short[-1] |= 0x80
        short.append(0)
    return bytes(short)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


@dataclass(frozen=True, slots=True)
class Node:
    """One field as it is on the wire. ``children`` are its fields when it is a known message
    field (``message`` its type); ``encoded`` is the whole field: tag, length, payload."""

    number: int
    wire: int
    payload: bytes
    children: tuple[Node, ...] | None
    message: Descriptor | None
    encoded: bytes


def leaf(number: int, wire: int, payload: bytes) -> Node:
    length = varint(len(payload)) if wire == LEN else b""
    return Node(number, wire, payload, None, None, varint(number << 3 | wire) + length + payload)


def message_node(number: int, children: tuple[Node, ...], message: Descriptor) -> Node:
    payload = b"".join(child.encoded for child in children)
    return Node(number, LEN, payload, children, message, varint(number << 3 | LEN) + varint(len(payload)) + payload)


def parse_fields(buf: bytes, message: Descriptor) -> tuple[Node, ...]:
    """The fields of a valid serialized ``message``, recursively for known message fields."""
    out: list[Node] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, end = _read_varint(buf, pos)
        elif wire == I64:
            end = pos + 8
        elif wire == I32:
            end = pos + 4
        elif wire == LEN:
            length, pos = _read_varint(buf, pos)
            end = pos + length
        else:
            raise ValueError(f"wire type {wire} in a seed")
        payload = buf[pos:end]
        pos = end
        field = message.fields_by_number.get(number)
        if wire == LEN and field is not None and field.message_type is not None:
            out.append(message_node(number, parse_fields(payload, field.message_type), field.message_type))
        else:
            out.append(leaf(number, wire, payload))
    return tuple(out)


TreePath = tuple[int, ...]


def _replace(children: tuple[Node, ...], path: TreePath, new: Callable[[Node], Sequence[Node]]) -> tuple[Node, ...]:
    """``children`` with the node at ``path`` replaced by ``new(node)`` (zero or more nodes)."""
    i = path[0]
    node = children[i]
    if len(path) == 1:
        replacement = tuple(new(node))
    else:
        assert node.children is not None and node.message is not None
        replacement = (message_node(node.number, _replace(node.children, path[1:], new), node.message),)
    return children[:i] + replacement + children[i + 1 :]


def _edit_children(
    root: tuple[Node, ...], path: TreePath, edit: Callable[[tuple[Node, ...]], tuple[Node, ...]]
) -> tuple[Node, ...]:
    """``root`` with the children of the message at ``path`` (() is the root) replaced by ``edit(children)``."""
    if not path:
        return edit(root)

    def rebuilt(node: Node) -> Sequence[Node]:
        assert node.children is not None and node.message is not None
        return (message_node(node.number, edit(node.children), node.message),)

    return _replace(root, path, rebuilt)


def _walk(children: tuple[Node, ...], prefix: TreePath, out: list[tuple[TreePath, Node]]) -> None:
    for i, node in enumerate(children):
        path = (*prefix, i)
        out.append((path, node))
        if node.children is not None:
            _walk(node.children, path, out)


@dataclass(frozen=True)
class PbSeed:
    """A valid request's fields, with every node indexed by kind for the mutations to pick from."""

    root: tuple[Node, ...]
    messages: tuple[tuple[TreePath, Descriptor], ...]  # the root, (), included
    any_values: tuple[TreePath, ...]
    key_values: tuple[TreePath, ...]
    scalars: tuple[tuple[TreePath, Node], ...]
    lengths: tuple[tuple[TreePath, Node], ...]
    nodes: tuple[tuple[TreePath, Node], ...]

    @staticmethod
    def of(body: bytes) -> PbSeed:
        root = parse_fields(body, ExportTraceServiceRequest.DESCRIPTOR)
        if b"".join(n.encoded for n in root) != body:
            raise ValueError("a seed does not re-encode to itself")
        nodes: list[tuple[TreePath, Node]] = []
        _walk(root, (), nodes)
        messages = [((), ExportTraceServiceRequest.DESCRIPTOR)]
        messages += [(p, n.message) for p, n in nodes if n.message is not None]
        return PbSeed(
            root,
            tuple(messages),
            tuple(p for p, n in nodes if n.message is AnyValue.DESCRIPTOR),
            tuple(p for p, n in nodes if n.message is KeyValue.DESCRIPTOR),
            tuple((p, n) for p, n in nodes if n.wire != LEN),
            tuple((p, n) for p, n in nodes if n.wire == LEN),
            tuple(nodes),
        )


def _expected_wire(field: FieldDescriptor) -> int:
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64):
        return I64
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32):
        return I32
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE):
        return LEN
    return VARINT


# --- values that have broken parsers before ---------------------------------------------


def _len_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | LEN) + varint(len(payload)) + payload


def nested_value(depth: int, kvlist: bool) -> bytes:
    """A serialized AnyValue nested ``depth`` arrays (two messages a level) or kvlists (three)
    deep, built as bytes: protobuf itself refuses to build what is past its limit of 100."""
    value = _len_field(1, b"leaf")  # string_value
    for _ in range(depth):
        if kvlist:
            value = _len_field(6, _len_field(1, _len_field(1, b"k") + _len_field(2, value)))
        else:
            value = _len_field(5, _len_field(1, value))  # array_value.values
    return value


TRICKY_STRINGS = (
    "",
    "x" * 70_000,
    "[" * 5000,
    "[" * 3000 + "]" * 3000,
    '{"a":' * 2000 + "1" + "}" * 2000,
    '{"details": ' + "[" * 1200 + "]" * 1200 + "}",
    "[1e999999, -0, 123456789012345678901234567890]",
    "1" * 5000,
    '{"card": 4111111111111111, "n": 4111111111111111111111}',
    '{"password": {"nested": [1, 2, {"token": null}]}, "ok": true}',
    '{"a": "\\ud800", "b": "\\u0000"}',
    "\x00\x1a0\\u0000",
    "mail alice@example.com, card 4111 1111 1111 1111, iban GB82WEST12345698765432",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "https://user:pw@example.com:99999/p?token=t&token=&key=%ZZ&#frag",
    "http://[::1/?password=",
    "standard",
    "verbose",
    "minimal",
    "\U0010ffff\u200b\ufeff",
)


def tricky_values() -> list[AnyValue]:
    """AnyValues to plant: odd strings, edge numbers, empty ones, nesting around the limit."""
    values = [AnyValue(string_value=s) for s in TRICKY_STRINGS]
    values += [AnyValue(int_value=n) for n in (0, -1, 2**63 - 1, -(2**63), 4111111111111111)]
    values += [AnyValue(double_value=d) for d in (math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308)]
    values += [AnyValue(bool_value=True), AnyValue(bytes_value=b""), AnyValue(bytes_value=b"\xff\x00" * 40)]
    values.append(AnyValue())
    empty_list = AnyValue()
    empty_list.array_value.SetInParent()
    empty_kvlist = AnyValue()
    empty_kvlist.kvlist_value.SetInParent()
    twice = AnyValue()
    twice.kvlist_value.values.add(key="k", value=AnyValue(string_value="a"))
    twice.kvlist_value.values.add(key="k", value=AnyValue(int_value=2))
    return [*values, empty_list, empty_kvlist, twice]


@cache
def _tricky_encoded() -> tuple[bytes, ...]:
    """The tricky values serialized, and values nested on either side of the depth limit
    (the request, resource spans, scope spans, span and key-value hold them 5 deep)."""
    nested = [nested_value(d, kvlist=False) for d in (20, 46, 47, 48, 60)]
    nested += [nested_value(d, kvlist=True) for d in (30, 31, 32)]
    return tuple(v.SerializeToString() for v in tricky_values()) + tuple(nested)


VARINT_EDGES = (0, 1, 2, 127, 128, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
I64_EDGES = tuple(struct.pack("<Q", n) for n in (0, 1, 2**63 - 1, 2**63, 2**64 - 1)) + tuple(
    struct.pack("<d", d) for d in (math.nan, math.inf, -0.0)
)
I32_EDGES = tuple(struct.pack("<I", n) for n in (0, 1, 2**31, 2**32 - 1))
LENGTH_LIES = (1, 2, 1000, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1)
# AnyValue contents planted as an attribute's value: known fields with a wire type their
# declaration does not have (protobuf keeps them as unknown fields and serializes them
# again, so the store's encoder reads them), a oneof set three times, an empty message.
PLANTED_ANY_VALUES = tuple(
    bytes.fromhex(h)
    for h in (
        "0a01783022",  # string_value "x", then kvlist_value (6) as a varint
        "3022",  # kvlist_value as a varint alone
        "0a0178300a",  # the same, its varint the byte of a string tag
        "290102030405060708",  # array_value (5) as a fixed64
        "1d00000000",  # int_value (3) as a fixed32
        "220178",  # double_value (4) as one length-delimited byte
        "3a01783801",  # bytes_value "x", then bytes_value (7) as a varint
        "100212021001",  # bool_value as a varint, then as a length-delimited field
        "330a017834",  # kvlist_value as a group
        "0a017810011805",  # string, bool, int: the oneof's last wins
        "2a023000",  # an array whose only value holds kvlist_value as a varint
        "32040a023022",  # a kvlist whose key-value holds the value as a varint
        "3200",  # an empty kvlist
    )
)
INTERESTING_BYTES = (b"\x00", b"\xff", b"\x80", b"\x7f", b"\x0a", b"\x12", b"\x1a\x00", b"\x80" * 10 + b"\x01")


# --- JSON ---------------------------------------------------------------------------------

JSON_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    2**64,
    10**30,
    "",
    "x",
    "zz",
    "0AF7651916CD43DD8448EB211C80319",
    "AAAA",
    "-9223372036854775809",
    "1e3",
    "NaN",
    "\ud800",
    [],
    [None],
    {},
    {"stringValue": "x", "intValue": "1"},
    [[[[[[[[[[1]]]]]]]]]],
)
# Raw JSON put where a value was: numbers json turns into inf or refuses, bare constants.
JSON_TOKENS = (
    "1e999999",
    "-1e999999",
    "-0",
    "1" * 5000,
    "0." + "0" * 400 + "1",
    "NaN",
    "Infinity",
    "1E400",
    "[" * 3000,
)
_PLACEHOLDER = "\u0000fuzz-raw-token\u0000"


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _json_paths(value: Any, prefix: tuple[str | int, ...], out: list[tuple[str | int, ...]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            _json_paths(v, (*prefix, k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            _json_paths(v, (*prefix, i), out)


# --- seeds --------------------------------------------------------------------------------


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def flow_request(trace_id: bytes, spans: int = 3, service: str = "fuzz.flow") -> ExportTraceServiceRequest:
    """A conversation-flow request of ``spans`` spans in one trace, with what every default
    processor acts on: details to outline, state with personal data, a URL and a header
    with secrets, a call payload over the redaction limit."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", service), _kv("flow.id", "checkout")])
    ss = rs.scope_spans.add()
    ss.scope.name = "tests.fuzz"
    ss.scope.version = "1"
    state = {"user": {"email": "alice@example.com", "note": "card 4111 1111 1111 1111"}, "step": 2, "ok": True}
    details = {"prompt": "summarise", "tools": ["search", "calc"], "usage": {"tokens": 12}}
    for i in range(spans):
        span = ss.spans.add(
            trace_id=trace_id,
            span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=b"" if i == 0 else (1).to_bytes(8, "big"),
            name=f"step {i}",
            kind=Span.SPAN_KIND_SERVER if i == 0 else Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=1_700_000_000_000_000_000 + i * 1000,
            end_time_unix_nano=1_700_000_000_500_000_000 + i * 1000,
        )
        span.attributes.extend(
            [
                _kv(cv.FLOW_ROLE, "step"),
                _kv("flow.node.id", f"node-{i}"),
                _kv("flow.step.number", i),
                _kv(cv.FLOW_STATE_AFTER, json.dumps(state)),
                _kv(cv.FLOW_NODE_DETAILS, json.dumps(details)),
                _kv("url.full", "https://bob:pw@api.example.com/hook?token=abc&page=2"),
                _kv("http.request.header.authorization", "Bearer abc.def"),
                _kv(cv.FLOW_CALL_REQUEST, "q" * 1500),
                _kv("flow.duration_ms", 12.5),
                _kv("retry", False),
            ]
        )
        event = span.events.add(time_unix_nano=1_700_000_000_100_000_000, name="said")
        event.attributes.append(_kv("text", "call me on +44 20 7946 0958"))
        if i:
            span.links.add(trace_id=trace_id, span_id=(1).to_bytes(8, "big")).attributes.append(_kv("why", "prev"))
        span.status.code = Status.STATUS_CODE_ERROR if i == spans - 1 else Status.STATUS_CODE_OK
    return request


def seed_requests() -> list[ExportTraceServiceRequest]:
    """The corpus: the OTLP/JSON fixtures as requests, and two flow requests."""
    seeds = [decode_trace_request_json(p.read_bytes()) for p in sorted(JSON_FIXTURES.glob("*.json"))]
    seeds.append(flow_request(bytes.fromhex("5eed0000000000000000000000000001")))
    verbose = flow_request(bytes.fromhex("5eed0000000000000000000000000002"), spans=1, service="fuzz.verbose")
    verbose.resource_spans[0].resource.attributes.append(_kv(cv.FLOW_TRACE_LEVEL, "verbose"))
    seeds.append(verbose)
    return seeds


# --- the mutator -------------------------------------------------------------------------


class Mutator:
    """Cases from one ``random.Random(seed)``; see the module docstring."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        requests = seed_requests()
        self.requests = requests
        self.pb_seeds = [PbSeed.of(r.SerializeToString()) for r in requests]
        self.pb_bodies = [b"".join(n.encoded for n in s.root) for s in self.pb_seeds]
        texts = [p.read_bytes() for p in sorted(JSON_FIXTURES.glob("*.json"))]
        self.json_bodies = texts + [encode_trace_request_json(r) for r in requests]
        self.json_seeds = [json.loads(t) for t in self.json_bodies]
        self._tricky = _tricky_encoded()
        self._bomb: bytes | None = None
        self._grpc_oversize: bytes | None = None

    # The mix: (weight, what) per transport.
    def case(self) -> Case:
        rng = self.rng
        if rng.random() < 0.4:
            return self._grpc_case()
        roll = rng.random()
        if roll < 0.45:
            name, body = self.protobuf_body()
            return Case(HTTP, name, body)
        if roll < 0.75:
            name, body = self.json_body()
            return Case(HTTP, name, body, JSON)
        return self._http_transport_case()

    def _grpc_case(self) -> Case:
        rng = self.rng
        roll = rng.random()
        if roll < 0.003:
            if self._grpc_oversize is None:
                span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="big")
                span.attributes.add(key="big").value.string_value = "x" * (4 * MIB + 10)
                request = ExportTraceServiceRequest()
                request.resource_spans.add().scope_spans.add().spans.append(span)
                self._grpc_oversize = request.SerializeToString()
            return Case(GRPC, "grpc.over_limit", self._grpc_oversize, None)
        if roll < 0.03:
            name, body = self.json_body()
            return Case(GRPC, "grpc.json_body+" + name, body, None)
        name, body = self.protobuf_body()
        gzipped = rng.random() < 0.15
        return Case(GRPC, name + ("+grpc_gzip" if gzipped else ""), body, None, grpc_gzip=gzipped)

    def _http_transport_case(self) -> Case:
        rng = self.rng
        as_json = rng.random() < 0.35
        if rng.random() < 0.5:  # a valid body, so that only the transport is wrong
            bodies = self.json_bodies if as_json else self.pb_bodies
            name, body = "valid", rng.choice(bodies)
        else:
            name, body = self.json_body() if as_json else self.protobuf_body()
        content_type = JSON if as_json else PROTOBUF
        kind = rng.choice(
            (
                "content_type",
                "content_type",
                "swapped_content_type",
                "encoding",
                "gzip",
                "gzip",
                "bad_gzip",
                "gzip_of_garbage",
                "gzip_truncated",
                "gzip_trailing",
                "gzip_twice",
                "gzip_bomb",
            )
        )
        encoding: str | None = None
        if kind == "content_type":
            content_type = rng.choice(
                (
                    None,
                    "",
                    "text/plain",
                    "application/protobuf",
                    "application/x-protobuf; charset=utf-8",
                    "application/json; charset=latin-1",
                    "APPLICATION/JSON",
                    "application/grpc",
                    "multipart/form-data; boundary=x",
                    "application/x-protobuf, application/json",
                    "application/",
                    ";;;",
                )
            )
        elif kind == "swapped_content_type":
            content_type = PROTOBUF if as_json else JSON
        elif kind == "encoding":
            encoding = rng.choice(("zstd", "br", "deflate", "gzip, gzip", "GZIP", " identity ", "x-gzip", "*", ""))
        elif kind == "gzip_bomb":
            if self._bomb is None:
                self._bomb = gzip.compress(b"\x00" * (20 * MIB + 1), compresslevel=9, mtime=0)
            body, encoding = self._bomb, "gzip"
        else:
            encoding = "gzip"
            if kind == "gzip":
                body = gzip.compress(body, compresslevel=1, mtime=0)
            elif kind == "bad_gzip":
                junk = rng.randbytes(rng.randint(0, 64))
                body = rng.choice((junk, b"\x1f\x8b" + junk, b"\x1f\x8b\x08\x00" + junk))
            elif kind == "gzip_of_garbage":
                body = gzip.compress(rng.randbytes(rng.randint(0, 512)), compresslevel=1, mtime=0)
            elif kind == "gzip_truncated":
                packed = gzip.compress(body, compresslevel=1, mtime=0)
                body = packed[: rng.randrange(len(packed))]
            elif kind == "gzip_trailing":
                body = gzip.compress(body, compresslevel=1, mtime=0) + rng.choice(
                    (b"\x00", rng.randbytes(9), b"\x1f\x8b")
                )
            else:
                body = gzip.compress(gzip.compress(body, compresslevel=1, mtime=0), compresslevel=1, mtime=0)
        return Case(HTTP, f"http.{kind}+{name}", body, content_type, encoding)

    # --- protobuf bodies ---
    def protobuf_body(self) -> tuple[str, bytes]:
        rng = self.rng
        seed = rng.choice(self.pb_seeds)
        if rng.random() < 0.55:
            name, body = self._structural(seed)
            if rng.random() < 0.15:
                more, body = self._bytes(body)
                name += "+" + more
            return "pb." + name, body
        name, body = self._bytes(b"".join(n.encoded for n in seed.root))
        return "pb." + name, body

    def _structural(self, seed: PbSeed) -> tuple[str, bytes]:
        rng = self.rng
        kind = rng.choice(
            (
                "duplicate_field",
                "drop_field",
                "ill_typed",
                "ill_typed",
                "ill_typed_any_value",
                "length_lie",
                "overlong_varint",
                "scalar_edge",
                "tricky_value",
                "tricky_value",
                "tricky_key",
                "planted_any_value",
            )
        )
        if kind == "planted_any_value":
            return kind, self._planted_any_value()
        root = seed.root
        if kind in ("duplicate_field", "drop_field"):
            path, node = rng.choice(seed.nodes)
            if kind == "duplicate_field":
                root = _replace(root, path, lambda n: (n, n))
            else:
                root = _replace(root, path, lambda n: ())
        elif kind in ("ill_typed", "ill_typed_any_value"):
            if kind == "ill_typed_any_value":
                path, message = rng.choice(seed.any_values), AnyValue.DESCRIPTOR
            else:
                path, message = rng.choice(seed.messages)
            field = rng.choice(message.fields)
            planted = self._wrong_wire(field)
            root = _edit_children(root, path, lambda c: self._insert(c, planted))
        elif kind == "length_lie":
            path, node = rng.choice(seed.lengths)
            claimed = rng.choice(LENGTH_LIES)
            claimed = len(node.payload) + claimed if claimed < 2000 else claimed
            lie = varint(node.number << 3 | LEN) + varint(claimed) + node.payload
            root = _replace(root, path, lambda n: (Node(n.number, LEN, n.payload, None, None, lie),))
        elif kind == "overlong_varint":
            path, node = rng.choice(seed.nodes)
            total = rng.choice((2, 5, 10, 10, 11))
            tag = overlong_varint(node.number << 3 | node.wire, total)
            if node.wire == VARINT and rng.random() < 0.5:
                value, _ = _read_varint(node.payload, 0)
                encoded = varint(node.number << 3) + overlong_varint(value, max(total, len(node.payload)))
            else:
                encoded = tag + node.encoded[len(varint(node.number << 3 | node.wire)) :]
            root = _replace(root, path, lambda n: (Node(n.number, n.wire, n.payload, None, None, encoded),))
        elif kind == "scalar_edge":
            path, node = rng.choice(seed.scalars)
            if node.wire == VARINT:
                payload = varint(rng.choice(VARINT_EDGES))
            elif node.wire == I64:
                payload = rng.choice(I64_EDGES)
            else:
                payload = rng.choice(I32_EDGES)
            root = _replace(root, path, lambda n: (leaf(n.number, n.wire, payload),))
        elif kind == "tricky_value":
            path = rng.choice(seed.any_values)
            fields = parse_fields(rng.choice(self._tricky), AnyValue.DESCRIPTOR)
            root = _edit_children(root, path, lambda c: fields)
        else:
            path = rng.choice(seed.key_values)
            key = leaf(1, LEN, rng.choice(KEYS).encode())
            value = message_node(2, parse_fields(rng.choice(self._tricky), AnyValue.DESCRIPTOR), AnyValue.DESCRIPTOR)
            root = _edit_children(root, path, lambda c: (key, value))
        return kind, b"".join(n.encoded for n in root)

    def _planted_any_value(self) -> bytes:
        """A seed with one attribute's value replaced through ``MergeFromString`` (as a
        client library would build it) by one of ``PLANTED_ANY_VALUES``."""
        rng = self.rng
        request = ExportTraceServiceRequest()
        request.CopyFrom(rng.choice(self.requests))
        holders = []
        for rs in request.resource_spans:
            holders.append(rs.resource.attributes)
            for ss in rs.scope_spans:
                holders.append(ss.scope.attributes)
                for span in ss.spans:
                    holders.append(span.attributes)
                    holders.extend(event.attributes for event in span.events)
                    holders.extend(link.attributes for link in span.links)
        attributes = rng.choice([h for h in holders if len(h)])
        value = attributes[rng.randrange(len(attributes))].value
        value.Clear()
        value.MergeFromString(rng.choice(PLANTED_ANY_VALUES))
        return request.SerializeToString()

    def _insert(self, children: tuple[Node, ...], node: Node) -> tuple[Node, ...]:
        at = self.rng.randint(0, len(children))
        return children[:at] + (node,) + children[at:]

    def _wrong_wire(self, field: FieldDescriptor) -> Node:
        """``field`` with a wire type its declaration does not have."""
        rng = self.rng
        wire = rng.choice([w for w in (VARINT, I64, LEN, I32, SGROUP) if w != _expected_wire(field)])
        number = field.number
        if wire == VARINT:
            return Node(number, wire, b"", None, None, varint(number << 3) + varint(rng.choice(VARINT_EDGES)))
        if wire == I64:
            return leaf(number, wire, rng.choice(I64_EDGES))
        if wire == I32:
            return leaf(number, wire, rng.choice(I32_EDGES))
        if wire == LEN:
            payload = rng.choice((b"", b"x", rng.randbytes(rng.randint(1, 12)), bytes.fromhex("0a01783022")))
            return leaf(number, wire, payload)
        inner = rng.choice((b"", varint(1 << 3) + varint(5), leaf(1, LEN, b"g").encoded))
        group = varint(number << 3 | SGROUP) + inner + varint(number << 3 | EGROUP)
        return Node(number, SGROUP, inner, None, None, group)

    def _bytes(self, body: bytes) -> tuple[str, bytes]:
        """A byte-level mutation of any body."""
        rng = self.rng
        data = bytearray(body)
        kind = rng.choice(("bit_flip", "bit_flip", "truncate", "insert", "delete", "copy_chunk"))
        if not data:
            kind = "insert"
        if kind == "bit_flip":
            for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[rng.randrange(len(data)) :]
        elif kind == "insert":
            at = rng.randint(0, len(data))
            extra = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
            data[at:at] = extra
        elif kind == "delete":
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 16)]
        else:
            start = rng.randrange(len(data))
            chunk = data[start : start + rng.randint(1, 64)]
            at = rng.randint(0, len(data))
            data[at:at] = chunk
        return kind, bytes(data)

    # --- JSON bodies ---
    def json_body(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.35:
            name, body = self._bytes(rng.choice(self.json_bodies))
            return "json." + name, body
        index = rng.randrange(len(self.json_seeds))
        doc = json.loads(self.json_bodies[index])  # a fresh copy to edit
        paths: list[tuple[str | int, ...]] = []
        _json_paths(doc, (), paths)
        path = rng.choice(paths)
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        kind = rng.choice(("replace", "replace", "replace", "raw_token", "drop", "snake_twice", "unknown_key"))
        if kind == "snake_twice" and not (isinstance(last, str) and _camel_to_snake(last) != last):
            kind = "unknown_key"
        raw: str | None = None
        if kind == "replace":
            parent[last] = rng.choice(JSON_VALUES)
        elif kind == "raw_token":
            raw = rng.choice(JSON_TOKENS)
            parent[last] = _PLACEHOLDER
        elif kind == "drop":
            del parent[last]
        elif kind == "snake_twice":
            assert isinstance(last, str)
            parent[_camel_to_snake(last)] = parent[last]
        elif isinstance(parent, dict):
            parent["futureField" + str(rng.randrange(3))] = rng.choice(JSON_VALUES)
        else:
            kind = "append"
            parent.append(rng.choice(JSON_VALUES))
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        if raw is not None:
            text = text.replace(json.dumps(_PLACEHOLDER), raw)
        try:
            body = text.encode()
        except UnicodeEncodeError:  # a lone surrogate, written as is with ensure_ascii off
            body = text.encode("utf-8", "surrogatepass")
        return "json." + kind, body


def control_request(index: int) -> tuple[bytes, ExportTraceServiceRequest]:
    """A valid request sent between the mutated ones: its own trace id, CONTROL_SPANS flow spans."""
    trace_id = b"\xc0\x47\x7e\x1d" + index.to_bytes(12, "big")
    return trace_id, flow_request(trace_id, spans=CONTROL_SPANS, service="fuzz.control")


def control_case(index: int) -> tuple[bytes, Case]:
    """The index-th valid request and its trace id: OTLP/HTTP protobuf, OTLP/HTTP JSON and
    OTLP/gRPC in turn."""
    trace_id, request = control_request(index)
    if index % 3 == 1:
        return trace_id, Case(HTTP, "control", encode_trace_request_json(request), JSON)
    return trace_id, Case((HTTP, HTTP, GRPC)[index % 3], "control", request.SerializeToString())


def rejected_spans(case: Case, reply: bytes) -> int:
    """``partial_success.rejected_spans`` of a successful reply to ``case``."""
    if case.content_type == JSON:
        partial = json.loads(reply).get("partialSuccess", {})
        return int(partial.get("rejectedSpans", 0))
    return ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans


# --- sending ------------------------------------------------------------------------------


class Sender:
    """Sends cases to a collector on 127.0.0.1 and names each answer (``"200"``, ``"OK"``,
    ``"error ConnectionResetError"``: no answer). One per thread: it keeps one HTTP/1.1
    connection (opened again after the server closed it) and one gRPC channel."""

    def __init__(self, http_port: int, grpc_port: int, timeout: float = 30.0) -> None:
        self._http_port = http_port
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self._export: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(EXPORT_PATH)

    def send(self, case: Case) -> tuple[str, bytes]:
        """(the answer's name, the reply body: HTTP's, or gRPC's on OK)."""
        if case.transport == GRPC:
            compression = grpc.Compression.Gzip if case.grpc_gzip else None
            try:
                reply: bytes = self._export(case.body, timeout=self._timeout, compression=compression)
            except grpc.RpcError as exc:
                code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
                return code.name, b""
            return grpc.StatusCode.OK.name, reply
        headers = {}
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        if case.content_encoding is not None:
            headers["Content-Encoding"] = case.content_encoding
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self._http_port, timeout=self._timeout)
        try:
            self._conn.request("POST", "/v1/traces", body=case.body, headers=headers)
            response = self._conn.getresponse()
            body = response.read()
        except OSError as exc:  # http.client's RemoteDisconnected is one too: no answer at all
            self._conn.close()
            self._conn = None
            return f"error {type(exc).__name__}", b""
        if response.will_close:
            self._conn.close()
            self._conn = None
        return str(response.status), body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._channel.close()
