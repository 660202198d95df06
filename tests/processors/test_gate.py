"""The gate (masking/_gate.c): the processors walk only the spans it names, and miss nothing.

The gate reads a serialized ``ResourceSpans`` and names the spans where a processor's
walk could change something. It may name too many (a digit run that is no phone), never
too few: a gated walk must give exactly the full walk's output, whatever the message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from tests.otlp_strategies import requests
from tracetables.collector.batch import SpanBatch
from tracetables.collector.extensions.tracing_config import TracingConfigExtension, TracingConfigExtensionConfig
from tracetables.collector.processors.masking import text as text_module
from tracetables.collector.processors.masking.keys import DEFAULT_KEYS, KeyMatcher
from tracetables.collector.processors.masking.otlp import SUMMARY_KEY, OtlpMasker
from tracetables.collector.processors.masking.text import Masker
from tracetables.collector.processors.trace_level import (
    FlowSetting,
    TraceLevelConfig,
    TraceLevelProcessor,
)
from tracetables.collector.processors.webhook_redaction import (
    WebhookRedactionConfig,
    WebhookRedactionProcessor,
)

DATA = Path(__file__).parent.parent / "testdata" / "pii"
SECRETS: list[dict[str, str]] = json.loads((DATA / "secrets.json").read_text())
CLEAN: list[str] = json.loads((DATA / "clean.json").read_text())
Gate = text_module._compiled.Gate


def _masker() -> Masker:
    return Masker(KeyMatcher(DEFAULT_KEYS))


def _gate(masker: Masker) -> object:
    return Gate(masker.literals, masker.keys.sensitive, True)


def _both_ways(rs: ResourceSpans) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """(output, count) of the full walk and of the gated walk, each on its own copy."""
    full, gated = ResourceSpans(), ResourceSpans()
    full.CopyFrom(rs)
    gated.CopyFrom(rs)
    full_count = OtlpMasker(_masker(), gated=False).resource_spans(full)
    gated_count = OtlpMasker(_masker()).mask(gated)
    return (full.SerializeToString(), full_count), (gated.SerializeToString(), gated_count)


# --- strings and values with secrets, near-misses and clean text in them -------------------
TEXTS = st.one_of(
    st.sampled_from([s["value"] for s in SECRETS]),
    st.sampled_from(CLEAN),
    st.text(max_size=30),
    st.text(alphabet='0123456789 ()+-.@_abcAKIZ"{}[]:\\u\u00e9', max_size=40),
    st.dictionaries(
        st.sampled_from(["email", "name", "apiKey", "note", "x\\u0041", "ok"]),
        st.sampled_from(["a", "ada@example.com", "1", "plain"]),
        max_size=3,
    ).map(json.dumps),
)
KEYS = st.sampled_from(
    [
        "note",
        "user.email",
        "password",
        "http.url",
        "flow.state.before",
        "gen_ai.usage.input_tokens",
        SUMMARY_KEY,
        "tags",
        "",
    ]
) | st.text(max_size=10)
LEAVES = st.one_of(
    TEXTS.map(lambda s: AnyValue(string_value=s)),
    st.integers(-3, 3).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.binary(max_size=4).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value={"values": vs}))
        | st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value={"values": [KeyValue(key=k, value=v) for k, v in kvs]})
        )
    ),
    max_leaves=6,
)
ATTRS = st.lists(st.tuples(KEYS, VALUES), max_size=3).map(lambda kvs: [KeyValue(key=k, value=v) for k, v in kvs])


@st.composite
def resource_spans(draw: st.DrawFn) -> ResourceSpans:
    rs = ResourceSpans()
    if draw(st.booleans()):
        rs.resource.attributes.extend(draw(ATTRS))
    for _ in range(draw(st.integers(1, 3))):
        ss = rs.scope_spans.add()
        if draw(st.integers(0, 3)) == 0:
            ss.scope.attributes.extend(draw(ATTRS))
        for _ in range(draw(st.integers(0, 4))):
            span = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
            if draw(st.booleans()):
                span.name = draw(TEXTS)
            if draw(st.integers(0, 3)) == 0:
                span.status.message = draw(TEXTS)
            span.attributes.extend(draw(ATTRS))
            for _ in range(draw(st.integers(0, 1))):
                event = span.events.add(name=draw(TEXTS))
                event.attributes.extend(draw(ATTRS))
            for _ in range(draw(st.integers(0, 1))):
                span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8).attributes.extend(draw(ATTRS))
    return rs


@settings(max_examples=500, deadline=None)
@given(rs=resource_spans())
def test_a_gated_walk_gives_the_full_walks_output(rs: ResourceSpans) -> None:
    full, gated = _both_ways(rs)
    assert gated == full


@settings(max_examples=200, deadline=None)
@given(request=requests())
def test_a_gated_walk_gives_the_full_walks_output_on_any_request(request: object) -> None:
    for rs in request.resource_spans:  # type: ignore[attr-defined]
        full, gated = _both_ways(rs)
        assert gated == full


def _spans_around(span: Span) -> ResourceSpans:
    """Two clean spans, then ``span``, in a second scope."""
    rs = ResourceSpans()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="checkout")))
    first = rs.scope_spans.add()
    first.spans.add(name="GET /health", trace_id=b"\x01" * 16, span_id=b"\x01" * 8)
    second = rs.scope_spans.add()
    second.spans.add(name="SELECT orders", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    second.spans.append(span)
    return rs


def _placements(value: str) -> list[tuple[str, Span]]:
    """``value`` in each place of a span that masking reads."""

    def span(**kwargs: object) -> Span:
        return Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, **kwargs)  # type: ignore[arg-type]

    out = [("name", span(name=f"GET /x/{value}")), ("status", span(status={"message": f"failed: {value}"}))]
    for where, av in (
        ("string", AnyValue(string_value=f"see {value} here")),
        ("array", AnyValue(array_value={"values": [AnyValue(string_value="ok"), AnyValue(string_value=value)]})),
        ("kvlist", AnyValue(kvlist_value={"values": [KeyValue(key="note", value=AnyValue(string_value=value))]})),
        ("json", AnyValue(string_value=json.dumps({"messages": [{"content": f"it is {value}"}]}))),
    ):
        s = span()
        s.attributes.append(KeyValue(key="flow.state.after", value=av))
        out.append((where, s))
    s = span()
    s.events.add(name=f"mail {value}").attributes.append(KeyValue(key="note", value=AnyValue(string_value="x")))
    out.append(("event name", s))
    s = span()
    s.events.add(name="e").attributes.append(KeyValue(key="note", value=AnyValue(string_value=value)))
    out.append(("event attribute", s))
    s = span()
    s.links.add(trace_id=b"\x02" * 16, span_id=b"\x04" * 8).attributes.append(
        KeyValue(key="note", value=AnyValue(string_value=value))
    )
    out.append(("link attribute", s))
    return out


@pytest.mark.parametrize("secret", SECRETS, ids=[f"{s['kind']}-{i}" for i, s in enumerate(SECRETS)])
def test_every_planted_secret_is_named_and_the_clean_spans_are_not(secret: dict[str, str]) -> None:
    for where, span in _placements(secret["value"]):
        rs = _spans_around(span)
        plan = _gate(_masker()).plan(rs.SerializeToString())
        assert plan == [[], [1]], (where, plan)


@pytest.mark.parametrize(
    "key, value",
    [
        ("user.email", AnyValue(string_value="anything")),
        ("password", AnyValue(int_value=1234)),
        ("api_key", AnyValue(bytes_value=b"\x01\x02")),
        ("ctx", AnyValue(kvlist_value={"values": [KeyValue(key="token", value=AnyValue(double_value=1.5))]})),
        ("note", AnyValue(string_value=json.dumps({"profile": {"refreshToken": "x"}}))),
        ("note", AnyValue(string_value='{"e": "ada\\u0040example.com"}')),  # an escape could hide an '@'
        (SUMMARY_KEY, AnyValue(string_value='{"email":1}')),
    ],
)
def test_keys_escapes_and_summaries_are_named(key: str, value: AnyValue) -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8)
    span.attributes.append(KeyValue(key=key, value=value))
    assert _gate(_masker()).plan(_spans_around(span).SerializeToString()) == [[], [1]]


def test_clean_traffic_is_skipped_whole() -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, name="POST /v1/orders/lookup")
    state = {
        "conversation": {"turn": 3, "locale": "en-GB"},
        "slots": {"order_id": "ORD-0012345", "confidence": 0.91},
        "messages": [{"role": "user", "content": "where is my package"}],
    }
    for key, value in (
        ("flow.state.before", json.dumps(state)),
        ("http.request.method", "POST"),
        ("gen_ai.usage.input_tokens", 812),
        ("flow.step.number", 4),
        ("feature.enabled", True),
    ):
        av = (
            AnyValue(string_value=value)
            if isinstance(value, str)
            else AnyValue(bool_value=value)
            if isinstance(value, bool)
            else AnyValue(int_value=value)
        )
        span.attributes.append(KeyValue(key=key, value=av))
    assert _gate(_masker()).plan(_spans_around(span).SerializeToString()) is None


def test_a_resource_or_scope_to_mask_means_every_span_below_it() -> None:
    rs = _spans_around(Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8))
    rs.scope_spans[1].scope.attributes.append(KeyValue(key="owner", value=AnyValue(string_value="ops@example.com")))
    assert _gate(_masker()).plan(rs.SerializeToString()) == [[], True]
    rs.resource.attributes.append(KeyValue(key="owner_email", value=AnyValue(string_value="x")))
    assert _gate(_masker()).plan(rs.SerializeToString()) is True


def test_deep_nesting_and_unreadable_bytes_are_left_to_the_walk() -> None:
    rs = _spans_around(Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8))
    deep = rs.scope_spans[1].spans[1].attributes.add(key="note").value
    for _ in range(70):  # built in place: deeper than a parser accepts
        deep = deep.array_value.values.add()
    deep.string_value = "x"
    assert _gate(_masker()).plan(rs.SerializeToString()) == [[], [1]]
    full, gated = _both_ways(rs)
    assert gated == full
    wire = rs.SerializeToString()
    for cut in (len(wire) - 1, len(wire) // 2, 3):
        assert _gate(_masker()).plan(wire[:cut]) is True
    assert _gate(_masker()).plan(b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01") is True
    assert _gate(_masker()).plan(b"") is None


def test_many_distinct_keys_share_the_answer_table_correctly() -> None:
    """More keys than the table's 4096 slots: collisions must never lend one key another's answer."""
    gate = _gate(_masker())
    rs = ResourceSpans()
    ss = rs.scope_spans.add()
    for i in range(6000):
        span = ss.spans.add(trace_id=b"\x01" * 16, span_id=i.to_bytes(8, "big"))
        key = f"k{i}.password" if i % 997 == 0 else f"k{i}.note"
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value="v")))
    wire = rs.SerializeToString()
    expected = [[i for i in range(6000) if i % 997 == 0]]
    assert gate.plan(wire) == expected
    assert gate.plan(wire) == expected  # second pass: answers from the table


def test_webhook_redaction_gated_equals_full() -> None:
    rs = ResourceSpans()
    ss = rs.scope_spans.add()
    bodies = ("short", "x" * 5000)
    for i, (key, value) in enumerate(
        [
            ("http.request.header.authorization", "Bearer abc"),
            ("http.request.header.accept", "text/html"),
            ("url.full", "https://u:p@h.example/x?token=1&a=2"),
            ("url.full", "https://h.example/x"),
            ("url.query", "sig=abc"),
            ("flow.call.request", bodies[0]),
            ("flow.call.response", bodies[1]),
            ("db.statement", "SELECT 1"),
        ]
    ):
        span = ss.spans.add(trace_id=b"\x01" * 16, span_id=bytes([0] * 7 + [i + 1]))
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    full, gated = ResourceSpans(), ResourceSpans()
    full.CopyFrom(rs)
    gated.CopyFrom(rs)
    WebhookRedactionProcessor(WebhookRedactionConfig(), gated=False)(SpanBatch([full], 8))
    processor = WebhookRedactionProcessor(WebhookRedactionConfig())
    processor(SpanBatch([gated], 8))
    assert gated.SerializeToString() == full.SerializeToString()
    assert full.SerializeToString() != rs.SerializeToString()
    assert processor.redacted_values == 4 and processor.truncated_bodies == 1  # header, userinfo, token, sig
    # accept and db.statement are never looked at
    assert Gate((), processor.interesting, False).plan(rs.SerializeToString()) == [[0, 2, 3, 4, 5, 6]]


def test_the_masker_counts_are_the_same_either_way() -> None:
    rs = _spans_around(_placements("ada@example.com")[0][1])
    (_, full_count), (_, gated_count) = _both_ways(rs)
    assert full_count == gated_count == 1


@settings(max_examples=200, deadline=None)
@given(
    rs=resource_spans(),
    flow_keys=st.lists(
        st.sampled_from(["flow.id", "flow.trace_level", "flow.state.before", "flow.node.details", "note"]), max_size=6
    ),
    resource_flow=st.sampled_from(["", "off", "small", "other"]),
)
def test_trace_level_gated_equals_full(rs: ResourceSpans, flow_keys: list[str], resource_flow: str) -> None:
    """Spans with and without flow keys, flows disabled, minimal or unset, by span or by resource."""
    values = {
        "flow.id": ["off", "small", "other"],
        "flow.trace_level": ["minimal", "verbose", "standard"],
        "flow.state.before": ['{"a": 1}'],
        "flow.node.details": ['{"conditions": [1, 2]}'],
        "note": ["x"],
    }
    spans = [span for ss in rs.scope_spans for span in ss.spans]
    for n, key in enumerate(flow_keys):
        if spans:
            options = values[key]
            spans[n % len(spans)].attributes.add(key=key).value.string_value = options[n % len(options)]
    if resource_flow:
        rs.resource.attributes.add(key="flow.id").value.string_value = resource_flow
    outputs = []
    for gated in (False, True):
        copy = ResourceSpans()
        copy.CopyFrom(rs)
        settings = TracingConfigExtension(TracingConfigExtensionConfig())
        settings.flows = {"off": FlowSetting(False, "standard"), "small": FlowSetting(True, "minimal")}
        processor = TraceLevelProcessor(TraceLevelConfig(), gated=gated, settings=settings)
        count = sum(len(ss.spans) for ss in copy.scope_spans)
        batch = processor(SpanBatch([copy], count))
        outputs.append((copy.SerializeToString(), batch.span_count, processor.dropped_spans))
    assert outputs[1] == outputs[0]
