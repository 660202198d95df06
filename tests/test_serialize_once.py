"""Serialized once: a batch caches each ResourceSpans' bytes until a processor says it changed it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from tests.processors.test_masking import ANY_VALUES, MIXED
from tracetables.collector import batch as batch_module
from tracetables.collector.batch import SpanBatch, StaleEncodingError
from tracetables.collector.component import ExportResult, Host
from tracetables.collector.errors import OverloadedError
from tracetables.collector.pipeline import FanOut, Pipeline
from tracetables.collector.processors.config import BatchProcessorConfig
from tracetables.collector.processors.pii_masking import PiiMaskingConfig, PiiMaskingProcessor
from tracetables.collector.processors.trace_level import TraceLevelConfig, TraceLevelProcessor
from tracetables.collector.processors.webhook_redaction import WebhookRedactionConfig, WebhookRedactionProcessor
from tracetables.exporters.postgres.encoder import encode_request, serialize


def _rs(*attrs: tuple[str, str], name: str = "GET /orders") -> ResourceSpans:
    rs = ResourceSpans()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="shop")))
    span = rs.scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name)
    for key, value in attrs:
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return rs


def _spans(payload: bytes) -> list[dict[str, str]]:
    """Each span of a serialized request as {name, attribute key: string value}."""
    request = ExportTraceServiceRequest.FromString(payload)
    return [
        {"name": s.name, **{kv.key: kv.value.string_value for kv in s.attributes}}
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def _default_chain() -> list[object]:
    return [
        TraceLevelProcessor(TraceLevelConfig(tracing_config="")),
        PiiMaskingProcessor(PiiMaskingConfig()),
        WebhookRedactionProcessor(WebhookRedactionConfig()),
    ]


class Recorder:
    """An exporter that keeps what the postgres encoder would be given for each batch."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    @property
    def concurrency(self) -> int:
        return 1

    async def start(self, host: Host) -> None:
        """Nothing to start."""

    async def export(self, batch: SpanBatch) -> ExportResult:
        self.payloads.append(serialize(batch))
        return ExportResult()

    async def shutdown(self) -> None:
        """Nothing to stop."""


class Renamer:
    """A processor that renames every span; ``marks`` says whether it calls ``changed``."""

    def __init__(self, marks: bool) -> None:
        self.marks = marks

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        for i, rs in enumerate(batch.resource_spans):
            batch.serialized(i)  # as a gate would: the bytes are now cached
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span.name = "renamed"
            if self.marks:
                batch.changed(i)
        return batch


def test_the_suite_runs_with_the_check_on() -> None:
    """tests/conftest.py turns the check on, so a processor that forgets to mark fails the suite."""
    assert batch_module.check_encoded is True


def test_bytes_are_serialized_once_and_reused() -> None:
    rs = _rs(("http.route", "/orders"))
    batch = SpanBatch([rs], 1)
    first = batch.serialized(0)
    assert first == rs.SerializeToString()
    assert batch.serialized(0) is first
    assert batch.serializations == 1


def test_changed_drops_the_cached_bytes() -> None:
    rs = _rs(("http.route", "/orders"))
    batch = SpanBatch([rs], 1)
    before = batch.serialized(0)
    rs.scope_spans[0].spans[0].name = "POST /orders"
    batch.changed(0)
    after = batch.serialized(0)
    assert after != before and after == rs.SerializeToString()
    assert batch.serializations == 2


def test_an_unmarked_change_is_caught_by_the_check() -> None:
    rs = _rs(("http.route", "/orders"))
    batch = SpanBatch([rs], 1)
    batch.serialized(0)
    rs.scope_spans[0].spans[0].name = "POST /orders"
    with pytest.raises(StaleEncodingError, match=r"resource_spans\[0\] changed without SpanBatch\.changed\(0\)"):
        batch.serialized(0)


def test_without_the_check_stale_bytes_are_what_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the check exists for: unchecked, a forgotten ``changed`` hands on the old bytes."""
    monkeypatch.setattr(batch_module, "check_encoded", False)
    rs = _rs(("http.route", "/orders"))
    batch = SpanBatch([rs], 1)
    old = batch.serialized(0)
    rs.scope_spans[0].spans[0].name = "POST /orders"
    assert batch.serialized(0) is old


def test_a_marked_change_reaches_the_encoder() -> None:
    recorder = Recorder()
    pipeline = Pipeline("traces", [Renamer(marks=True)], None, [recorder])
    asyncio.run(pipeline.consume(SpanBatch([_rs()], 1)))
    assert [s["name"] for s in _spans(recorder.payloads[0])] == ["renamed"]


def test_the_pipeline_names_the_processor_that_did_not_mark() -> None:
    recorder = Recorder()
    pipeline = Pipeline("traces", [Renamer(marks=False)], None, [recorder], processor_ids=["renamer"])
    with pytest.raises(StaleEncodingError, match=r"processor 'renamer' changed resource_spans\[0\]"):
        asyncio.run(pipeline.consume(SpanBatch([_rs()], 1)))
    assert recorder.payloads == []


def test_clean_spans_are_serialized_once_through_the_default_processors_and_the_encoder() -> None:
    batch = SpanBatch([_rs(("http.route", "/orders")), _rs(("db.system", "postgresql"))], 2)
    for step in _default_chain():
        batch = step(batch)  # type: ignore[operator]
    payload = serialize(batch)
    assert batch.serializations == 2  # one per ResourceSpans: the first gate's
    assert encode_request(payload).rows == 2


def test_masked_and_redacted_values_reach_the_encoder() -> None:
    """pii_masking and webhook_redaction each change the message after a gate cached it."""
    rs = _rs(("user.note", "mail ada@example.com please"), ("url.full", "https://h.example/x?token=abc"))
    clean = _rs(("http.route", "/orders"))
    batch = SpanBatch([rs, clean], 2)
    for step in _default_chain():
        batch = step(batch)  # type: ignore[operator]
    spans = _spans(serialize(batch))
    assert "ada@example.com" not in spans[0]["user.note"] and "[EMAIL]" in spans[0]["user.note"]
    assert spans[0]["url.full"] == "https://h.example/x?token=[REDACTED]"
    assert spans[1]["http.route"] == "/orders"
    # rs: trace_level's gate, again after masking, again after redaction; clean: once
    assert batch.serializations == 4


def test_trace_level_marks_the_details_it_reduces() -> None:
    rs = _rs(("flow.node.details", '{"inputs": {"a": 1}, "conditions": [1, 2]}'), ("flow.state.after", '{"x": 1}'))
    batch = TraceLevelProcessor(TraceLevelConfig(tracing_config=""))(SpanBatch([rs], 1))
    details = _spans(serialize(batch))[0]["flow.node.details"]
    assert '"@items": 2' in details and '"@keys"' in details


def test_merge_and_fan_out_copies_carry_the_cache() -> None:
    a, b = SpanBatch([_rs()], 1), SpanBatch([_rs(name="other")], 1)
    a.serialized(0)
    cached = a.serialized(0)
    merged = SpanBatch.merge([a, b])
    assert merged.serialized(0) is cached
    copy = merged.copy()
    assert copy.resource_spans[0] is not merged.resource_spans[0]
    assert copy.serialized(0) is merged.serialized(0)
    assert copy.serialized(1) == merged.resource_spans[1].SerializeToString()


def test_each_fan_out_pipeline_encodes_its_own_changes() -> None:
    plain, renaming = Recorder(), Recorder()
    fan = FanOut([Pipeline("a", [], None, [plain]), Pipeline("b", [Renamer(marks=True)], None, [renaming])])
    batch = SpanBatch([_rs()], 1)
    batch.serialized(0)
    asyncio.run(fan.consume(batch))
    assert [s["name"] for s in _spans(plain.payloads[0])] == ["GET /orders"]
    assert [s["name"] for s in _spans(renaming.payloads[0])] == ["renamed"]


KEYS = st.sampled_from(
    [
        "note",
        "secret",
        "user.email",
        "url.full",
        "url.query",
        "http.request.header.authorization",
        "flow.call.request",
        "flow.node.details",
        "flow.state.before",
        "flow.trace_level",
        "flow.id",
    ]
)
VALUES = st.one_of(
    ANY_VALUES,
    st.sampled_from(
        [
            "https://u:p@h.example/x?token=1&a=2",
            "https://h.example/x",
            "sig=abc&page=2",
            "minimal",
            "verbose",
            '{"conditions": [1, 2], "inputs": {"a": 1}}',
            "x" * 1500,
        ]
    ).map(lambda t: AnyValue(string_value=t)),
)


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(st.tuples(MIXED, st.lists(st.tuples(KEYS, VALUES), max_size=5)), min_size=1, max_size=4),
    resource=st.lists(st.tuples(KEYS, VALUES), max_size=2),
)
def test_the_default_processors_mark_every_change(
    spans: list[tuple[str, list[tuple[str, AnyValue]]]], resource: list[tuple[str, AnyValue]]
) -> None:
    """Whatever the spans hold, the bytes handed on are the messages' own after every step."""
    rs = ResourceSpans()
    rs.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in resource)
    ss = rs.scope_spans.add()
    for n, (name, attrs) in enumerate(spans):
        span = ss.spans.add(trace_id=b"\x01" * 16, span_id=bytes([0] * 7 + [n + 1]), name=name)
        span.attributes.extend(KeyValue(key=k, value=v) for k, v in attrs)
    batch = SpanBatch([rs], len(spans))
    for step in _default_chain():
        batch = step(batch)  # type: ignore[operator]
        batch.verify(type(step).__name__)
    assert serialize(batch) == serialize(SpanBatch(batch.resource_spans, batch.span_count))


def test_the_encoder_releases_the_bytes_it_has_used() -> None:
    from tracetables.exporters.postgres.encoder import RowEncoder

    batch = SpanBatch([_rs()], 1)
    batch.serialized(0)
    encoded = asyncio.run(RowEncoder(0).encode(batch))
    assert encoded.rows == 1
    assert batch.serialized(0) == batch.resource_spans[0].SerializeToString()
    assert batch.serializations == 2  # released after encoding: read again, serialized again


class Gate(Recorder):
    """A recorder whose exports wait until ``opened`` is set: a store that is not writing."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()

    async def export(self, batch: SpanBatch) -> ExportResult:
        await self.opened.wait()
        return await super().export(batch)


def test_fan_out_refuses_in_every_pipeline_when_one_queue_is_full() -> None:
    """A request one pipeline refuses reaches none: the others would store it, then store it
    again when the client retries the refusal."""
    full, other = Gate(), Recorder()
    tight = BatchProcessorConfig(send_batch_size=1, max_queued_spans=1)
    fan = FanOut([Pipeline("full", [], tight, [full]), Pipeline("other", [], None, [other])])

    async def run() -> None:
        first = asyncio.ensure_future(fan.consume(SpanBatch([_rs()], 1)))
        while len(other.payloads) < 1:  # the first request is stored in "other", queued in "full"
            await asyncio.sleep(0.001)
        with pytest.raises(OverloadedError):
            await fan.consume(SpanBatch([_rs(name="second")], 1))
        full.opened.set()
        await first

    asyncio.run(run())
    assert [[s["name"] for s in _spans(p)] for p in other.payloads] == [["GET /orders"]]
    assert len(full.payloads) == 1
