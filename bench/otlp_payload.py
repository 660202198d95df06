"""Realistic OTLP trace requests, pre-encoded once and re-sent with fresh ids and times.

A :class:`Template` is one encoded ``ExportTraceServiceRequest`` plus the byte offsets
of every trace id, span id, parent span id, link trace/span id and timestamp in it.
:meth:`Template.fresh` copies the bytes and overwrites those fields in place (same
lengths, so the protobuf framing stays valid): every request sent carries new random
trace and span ids — so ``ON CONFLICT DO NOTHING`` never drops a span as a duplicate —
and times shifted to "now", while parent references and span links inside the request
stay consistent. No protobuf encoding happens in the load loop. This module builds the
``raw`` workload; ``mixed_payload`` the ``mixed`` one, with the same :class:`Template`.
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

SERVICES = ("frontend", "checkout", "cart", "payment", "catalog", "shipping", "recommendation", "accounts")
ROUTES = (
    "/api/cart",
    "/api/cart/items/{id}",
    "/api/checkout",
    "/api/products/{id}",
    "/api/orders",
    "/api/users/{id}",
    "/api/recommendations",
    "/health",
)
TABLES = ("orders", "order_items", "products", "users", "carts", "inventory")
TOPICS = ("orders.created", "payments.settled", "inventory.reserved")
HOSTS = ("cart.internal", "payments.internal", "catalog.internal", "db-primary.internal", "redis.internal")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
)

AttrGen = Callable[[random.Random], object]
# Per span category: its kind, a name generator, the instrumentation scope, and an
# ordered attribute list whose first 10 mix 6 strings, 2 ints, a double and a bool.
_HTTP_SERVER: list[tuple[str, AttrGen]] = [
    ("http.request.method", lambda r: r.choice(("GET", "GET", "GET", "POST", "PUT", "DELETE"))),
    ("http.route", lambda r: r.choice(ROUTES)),
    ("url.path", lambda r: r.choice(ROUTES).replace("{id}", str(r.randrange(1, 99999)))),
    ("http.response.status_code", lambda r: r.choice((200, 200, 200, 201, 204, 304, 404, 500))),
    ("server.address", lambda r: "shop.example.com"),
    ("user_agent.original", lambda r: r.choice(AGENTS)),
    ("client.address", lambda r: f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"),
    ("server.port", lambda r: 8080),
    ("app.request.size_ratio", lambda r: round(r.uniform(0.01, 1.0), 4)),
    ("app.authenticated", lambda r: r.random() < 0.7),
    ("network.protocol.version", lambda r: "1.1"),
    ("url.scheme", lambda r: "https"),
]
_DB_CLIENT: list[tuple[str, AttrGen]] = [
    ("db.system.name", lambda r: "postgresql"),
    ("db.namespace", lambda r: "shop"),
    ("db.operation.name", lambda r: r.choice(("SELECT", "SELECT", "INSERT", "UPDATE"))),
    ("db.collection.name", lambda r: r.choice(TABLES)),
    ("db.query.text", lambda r: f"SELECT id, status, total FROM {r.choice(TABLES)} WHERE user_id = $1 LIMIT $2"),
    ("server.address", lambda r: "db-primary.internal"),
    ("server.port", lambda r: 5432),
    ("db.response.returned_rows", lambda r: r.randrange(0, 200)),
    ("app.db.pool_wait_ms", lambda r: round(r.uniform(0.0, 12.0), 3)),
    ("app.db.cached_plan", lambda r: r.random() < 0.9),
    ("network.peer.address", lambda r: "10.0.3.17"),
    ("db.client.connection.pool.name", lambda r: "primary"),
]
_HTTP_CLIENT: list[tuple[str, AttrGen]] = [
    ("http.request.method", lambda r: r.choice(("GET", "POST"))),
    ("url.full", lambda r: f"http://{r.choice(HOSTS)}:8080/v1/{r.choice(TABLES)}/{r.randrange(1, 99999)}"),
    ("server.address", lambda r: r.choice(HOSTS)),
    ("http.response.status_code", lambda r: r.choice((200, 200, 200, 202, 404, 503))),
    ("network.protocol.name", lambda r: "http"),
    ("network.protocol.version", lambda r: "1.1"),
    ("server.port", lambda r: 8080),
    ("http.request.resend_count", lambda r: r.choice((0, 0, 0, 1))),
    ("app.retry_backoff_s", lambda r: round(r.uniform(0.0, 2.0), 3)),
    ("app.circuit_open", lambda r: r.random() < 0.02),
    ("http.request.body.size", lambda r: r.randrange(0, 8192)),
    ("url.scheme", lambda r: "http"),
]
_MESSAGING: list[tuple[str, AttrGen]] = [
    ("messaging.system", lambda r: "kafka"),
    ("messaging.destination.name", lambda r: r.choice(TOPICS)),
    ("messaging.operation.type", lambda r: "send"),
    ("messaging.client.id", lambda r: f"producer-{r.randrange(8)}"),
    ("messaging.kafka.message.key", lambda r: f"order-{r.randrange(10**6)}"),
    ("server.address", lambda r: "kafka-0.internal"),
    ("messaging.destination.partition.id", lambda r: r.randrange(12)),
    ("messaging.message.body.size", lambda r: r.randrange(200, 4000)),
    ("app.queue.lag_s", lambda r: round(r.uniform(0.0, 3.0), 3)),
    ("app.idempotent", lambda r: True),
    ("messaging.kafka.offset", lambda r: r.randrange(10**9)),
    ("server.port", lambda r: 9092),
]
_INTERNAL: list[tuple[str, AttrGen]] = [
    ("code.function.name", lambda r: r.choice(("compute_total", "apply_discounts", "render", "validate"))),
    ("code.file.path", lambda r: r.choice(("app/cart.py", "app/pricing.py", "app/views.py"))),
    ("app.user.id", lambda r: f"u-{r.randrange(10**7)}"),
    ("app.cart.currency", lambda r: r.choice(("EUR", "USD", "GBP"))),
    ("app.feature_flag", lambda r: r.choice(("new-checkout", "control", "fast-cart"))),
    ("app.region", lambda r: r.choice(("eu-west-1", "us-east-1"))),
    ("app.cart.items", lambda r: r.randrange(1, 30)),
    ("code.line.number", lambda r: r.randrange(10, 900)),
    ("app.cart.total", lambda r: round(r.uniform(1.0, 900.0), 2)),
    ("app.cache_hit", lambda r: r.random() < 0.5),
    ("thread.name", lambda r: "MainThread"),
    ("app.tenant", lambda r: f"tenant-{r.randrange(50)}"),
]


@dataclass(frozen=True)
class _Category:
    kind: Span.SpanKind.ValueType
    scope: tuple[str, str]
    name: Callable[[random.Random], str]
    attrs: list[tuple[str, AttrGen]]


DB_CATEGORY = _Category(
    Span.SPAN_KIND_CLIENT,
    ("opentelemetry.instrumentation.psycopg", "0.55b0"),
    lambda r: f"{r.choice(('SELECT', 'SELECT', 'INSERT', 'UPDATE'))} shop.{r.choice(TABLES)}",
    _DB_CLIENT,
)
INTERNAL_CATEGORY = _Category(
    Span.SPAN_KIND_INTERNAL,
    ("shop.app", "2.14.1"),
    lambda r: r.choice(("cart.compute_total", "pricing.apply_discounts", "render template", "validate")),
    _INTERNAL,
)
_CATEGORIES = (
    DB_CATEGORY,
    _Category(
        Span.SPAN_KIND_CLIENT,
        ("opentelemetry.instrumentation.httpx", "0.55b0"),
        lambda r: r.choice(("GET", "POST")),
        _HTTP_CLIENT,
    ),
    _Category(
        Span.SPAN_KIND_PRODUCER,
        ("opentelemetry.instrumentation.confluent_kafka", "0.55b0"),
        lambda r: f"send {r.choice(TOPICS)}",
        _MESSAGING,
    ),
    INTERNAL_CATEGORY,
)
_SERVER = _Category(Span.SPAN_KIND_SERVER, ("opentelemetry.instrumentation.asgi", "0.55b0"), lambda r: "", _HTTP_SERVER)


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _attributes(rng: random.Random, pool: list[tuple[str, AttrGen]], count: int) -> list[KeyValue]:
    out = [KeyValue(key=key, value=_any(gen(rng))) for key, gen in pool[:count]]
    for i in range(len(out), count):  # more than the pool holds: alternate strings and ints
        value: object = f"value-{rng.randrange(10**6)}" if i % 2 else rng.randrange(10**6)
        out.append(KeyValue(key=f"app.extra.attr_{i}", value=_any(value)))
    return out


def sdk_resource_spans(
    request: ExportTraceServiceRequest, rng: random.Random, service: str, version: str
) -> ResourceSpans:
    """A new ResourceSpans with the resource an OTel SDK sends for one service instance."""
    rs = request.resource_spans.add()
    rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    resource = {
        "service.name": service,
        "service.version": version,
        "service.instance.id": f"{rng.getrandbits(128):032x}",
        "deployment.environment.name": "production",
        "host.name": f"{service}-{rng.randrange(10**5):05d}",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.34.1",
    }
    rs.resource.attributes.extend(KeyValue(key=k, value=_any(v)) for k, v in resource.items())
    return rs


def build_request(
    rng: random.Random, variant: int, spans: int, attributes: int, now_ns: int
) -> ExportTraceServiceRequest:
    """One SDK-like export: one service instance, traces of 1-12 spans, 2% errors."""
    service = SERVICES[variant % len(SERVICES)]
    request = ExportTraceServiceRequest()
    rs = sdk_resource_spans(request, rng, service, f"2.{variant % 5}.{variant % 17}")
    scopes: dict[tuple[str, str], list[Span]] = {}
    made = 0
    while made < spans:
        size = min(rng.randint(1, 12), spans - made)
        trace_id = rng.randbytes(16)
        trace: list[Span] = []
        for i in range(size):
            cat = _SERVER if i == 0 else rng.choice(_CATEGORIES)
            span = Span(trace_id=trace_id, span_id=rng.randbytes(8), kind=cat.kind, flags=0x101)
            attrs = _attributes(rng, cat.attrs, attributes)
            if i == 0:
                span.name = f"{attrs[0].value.string_value} {attrs[1].value.string_value}" if attributes >= 2 else "GET"
                span.start_time_unix_nano = now_ns - rng.randrange(5 * 10**9) - 600 * 10**6
                span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(2 * 10**6, 500 * 10**6)
            else:
                parent = rng.choice(trace)
                span.name = cat.name(rng)
                span.parent_span_id = parent.span_id
                lo, hi = parent.start_time_unix_nano, parent.end_time_unix_nano
                span.start_time_unix_nano = rng.randrange(lo, hi)
                span.end_time_unix_nano = rng.randrange(span.start_time_unix_nano + 1, hi + 1)
            span.attributes.extend(attrs)
            if rng.random() < 0.02:
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = rng.choice(("connection reset by peer", "deadline exceeded", "HTTP 500"))
                event = span.events.add(name="exception", time_unix_nano=span.end_time_unix_nano - rng.randrange(1000))
                event.attributes.extend(
                    [
                        KeyValue(key="exception.type", value=_any("TimeoutError")),
                        KeyValue(key="exception.message", value=_any(span.status.message)),
                    ]
                )
            trace.append(span)
            scopes.setdefault(cat.scope, []).append(span)
        made += size
    for (name, version), group in scopes.items():
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = name, version
        ss.spans.extend(group)
    return request


# Field numbers (opentelemetry/proto/trace/v1/trace.proto) of what a fresh copy rewrites.
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT_ID, _SPAN_START, _SPAN_END, _SPAN_EVENTS, _SPAN_LINKS = 1, 2, 4, 7, 8, 11, 13
_EVENT_TIME = 1
_LINK_TRACE_ID, _LINK_SPAN_ID = 1, 2


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, value start, value end) of each field of the message in ``buf[pos:end]``."""
    out = []
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            start, (_, pos) = pos, _varint(buf, pos)
        elif wire == 1:
            start, pos = pos, pos + 8
        elif wire == 2:
            length, start = _varint(buf, pos)
            pos = start + length
        elif wire == 5:
            start, pos = pos, pos + 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((key >> 3, start, pos))
    if pos != end:
        raise AssertionError("a field runs past the end of its message")
    return out


@dataclass
class Template:
    """An encoded request and where its ids and times sit in the bytes."""

    body: bytes
    span_count: int
    base_ns: int
    trace_slots: list[list[int]] = field(default_factory=list)  # per trace: offsets of its id (spans, links)
    span_slots: list[tuple[int, list[int]]] = field(default_factory=list)  # span id, parent and link refs
    time_slots: list[tuple[int, int]] = field(default_factory=list)  # offset, template value
    random_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # what the request holds, by role (mixed workload)

    @classmethod
    def from_request(cls, request: ExportTraceServiceRequest, base_ns: int) -> Template:
        """Locate each span's encoding in order, then walk its fields on the wire.

        Trace ids and span ids are recorded wherever they occur: a span's own ids, its
        parent span id, and each link's trace and span id (links must point at spans of
        the same request, so that a fresh copy keeps them pointing there).
        """
        body = request.SerializeToString()
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        tpl = cls(body, len(spans), base_ns)
        traces: dict[bytes, list[int]] = {}
        own: dict[bytes, int] = {}
        refs: dict[bytes, list[int]] = {}
        pos = 0
        for s in spans:
            encoded = s.SerializeToString()
            at = body.find(encoded, pos)
            if at < 0:
                raise AssertionError("a span's encoding is not found in the request's")
            pos = at + len(encoded)
            for number, start, end in _fields(body, at, pos):
                value = body[start:end]
                if number == _SPAN_TRACE_ID:
                    traces.setdefault(value, []).append(start)
                elif number == _SPAN_ID:
                    own[value] = start
                elif number == _SPAN_PARENT_ID and value:
                    refs.setdefault(value, []).append(start)
                elif number in (_SPAN_START, _SPAN_END):
                    tpl.time_slots.append((start, struct.unpack("<Q", value)[0]))
                elif number == _SPAN_EVENTS:
                    tpl.time_slots.extend(
                        (s2, struct.unpack("<Q", body[s2:e2])[0])
                        for n2, s2, e2 in _fields(body, start, end)
                        if n2 == _EVENT_TIME
                    )
                elif number == _SPAN_LINKS:
                    for n2, s2, e2 in _fields(body, start, end):
                        if n2 == _LINK_TRACE_ID:
                            traces.setdefault(body[s2:e2], []).append(s2)
                        elif n2 == _LINK_SPAN_ID:
                            refs.setdefault(body[s2:e2], []).append(s2)
        if set(refs) - set(own):
            raise AssertionError("a parent or linked span id is not a span of the request")
        if any(len(tid) != 16 for tid in traces) or any(len(sid) != 8 for sid in own):
            raise AssertionError("a trace id or span id of an unexpected length")
        if len(traces) != len({s.trace_id for s in spans}):
            raise AssertionError("a link points into a trace with no span in the request")
        tpl.trace_slots = list(traces.values())
        tpl.span_slots = [(off, refs.get(sid, [])) for sid, off in own.items()]
        tpl.random_bytes = 16 * len(tpl.trace_slots) + 8 * len(tpl.span_slots)
        return tpl

    def fresh(self, now_ns: int | None = None) -> bytes:
        """The request with new random ids and its times moved so they end around now."""
        delta = (time.time_ns() if now_ns is None else now_ns) - self.base_ns
        buf = bytearray(self.body)
        rnd = os.urandom(self.random_bytes)
        pos = 0
        for offsets in self.trace_slots:
            tid = rnd[pos : pos + 16]
            pos += 16
            for off in offsets:
                buf[off : off + 16] = tid
        for off, refs in self.span_slots:
            sid = rnd[pos : pos + 8]
            pos += 8
            buf[off : off + 8] = sid
            for ref in refs:
                buf[ref : ref + 8] = sid
        pack_into = struct.pack_into
        for off, ns in self.time_slots:
            pack_into("<Q", buf, off, ns + delta)
        return bytes(buf)


def build_templates(seed: int, count: int, spans: int, attributes: int) -> list[Template]:
    """``count`` distinct templates (services, names, attribute values differ)."""
    rng = random.Random(seed)
    now = time.time_ns()
    templates = [Template.from_request(build_request(rng, i, spans, attributes, now), now) for i in range(count)]
    self_check(templates[0])
    return templates


def self_check(tpl: Template) -> None:
    """Two fresh copies decode, keep the trace structure and links, and share no id."""
    a, b = (ExportTraceServiceRequest.FromString(tpl.fresh()) for _ in range(2))
    spans_a = [s for rs in a.resource_spans for ss in rs.scope_spans for s in ss.spans]
    spans_b = [s for rs in b.resource_spans for ss in rs.scope_spans for s in ss.spans]
    ids_a = {s.span_id: s.trace_id for s in spans_a}
    assert len(spans_a) == tpl.span_count and len(ids_a) == tpl.span_count
    assert not ids_a.keys() & {s.span_id for s in spans_b}
    assert not {s.trace_id for s in spans_a} & {s.trace_id for s in spans_b}
    assert all(not s.parent_span_id or ids_a.get(s.parent_span_id) == s.trace_id for s in spans_a)
    assert all(ids_a.get(link.span_id) == link.trace_id for s in spans_a for link in s.links)
    assert all(abs(s.end_time_unix_nano - time.time_ns()) < 60 * 10**9 for s in spans_a)
