"""handoff() / resume(): the reference's string form, and what resume sets up (in-memory SDK)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracetables.instrumentation import (
    FlowRef,
    current_flow,
    handoff,
    resume,
    run,
    step,
)


def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_round_trip_and_resume_sets_parent_flow_and_numbering() -> None:
    provider, exporter = memory()
    with run("r", session_id="s-h1", user_id="u", flow_id="f", flow_version="2", tracer_provider=provider):
        with step("a", tracer_provider=provider) as first:
            ref = handoff()
    assert ref is not None and ref.step_number == 1
    text = ref.to_string()
    assert FlowRef.from_string(text) == ref
    assert text.startswith('{"traceparent":"00-')
    with resume(text) as resumed:
        assert resumed == ref
        assert current_flow().session_id == "s-h1" and current_flow().flow_version == "2"
        with step("b", tracer_provider=provider):
            pass
    assert current_flow().session_id is None  # restored on leaving
    spans = {s.name: s for s in exporter.get_finished_spans()}
    b = spans["step b"]
    assert b.parent is not None and b.parent.span_id == first._span.get_span_context().span_id
    assert b.parent.is_remote and b.context.trace_id == ref.trace_id
    assert b.attributes["flow.step.number"] == 2 and b.attributes["user.id"] == "u"  # type: ignore[index]


def test_no_reference_means_nothing_happens() -> None:
    assert handoff() is None  # no current span
    for ref in (None, "", "garbage", '{"traceparent": "00-00000000000000000000000000000000-0000000000000001-01"}'):
        with resume(ref) as resumed:
            assert resumed is None
            assert current_flow().session_id is None


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=200)
    | st.builds(
        '{{"traceparent":"{}","step":{}{}}}'.format,
        st.text(alphabet="0123456789abcdef-", max_size=60),
        st.sampled_from(["1", "-1", "1.5", '"x"', "null"]),
        st.sampled_from(["", ',"session_id":5', ',"session_id":"s"']),
    )
)
def test_any_string_parses_or_gives_none(text: str) -> None:
    ref = FlowRef.from_string(text)
    assert ref is None or (ref.trace_id > 0 and ref.span_id > 0 and ref.step_number >= 0)
