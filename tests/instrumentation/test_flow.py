"""run() and step(): the attributes DESIGN.md names, through the real SDK and collector."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.collector_harness import RunningCollector
from tracetables.instrumentation import run, step
from tracetables.instrumentation._serialize import (
    TRUNCATED,
    _chunks,
    _fallback,
    to_json,
)


@pytest.fixture
def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_flow_run_and_steps_land_in_spans_with_design_attributes(
    collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A run with two steps, sent by the OTLP exporter, is in `spans` with every flow attribute."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url, timeout=10)))
    with run(
        "conversation",
        session_id="s-1",
        user_id="u-7",
        conversation_id="c-3",
        flow_id="onboarding",
        flow_version="4",
        request={"text": "hi"},
        tracer_provider=provider,
    ) as r:
        with step("ask_name", "question", state_before={"name": None}, tracer_provider=provider) as st:
            st.state_after(lambda: {"name": "Ada"})
            st.details({"question_text": "What is your name?", "user_response": "Ada"})
            st.next("greet", "default")
        with step("greet", "message", state_before={"name": "Ada"}, tracer_provider=provider):
            pass
        r.response({"text": "Hello Ada"})
    provider.shutdown()
    rows = {
        name: attrs
        for name, attrs in conn.execute(
            "SELECT name, attributes FROM spans WHERE NOT attributes ? 'flow.pending'"
        ).fetchall()
    }
    assert set(rows) == {"conversation", "step ask_name", "step greet"}
    run_attrs, ask, greet = rows["conversation"], rows["step ask_name"], rows["step greet"]
    assert run_attrs["flow.role"] == "run" and run_attrs["flow.id"] == "onboarding"
    assert json.loads(run_attrs["flow.run.request"]) == {"text": "hi"}
    assert json.loads(run_attrs["flow.run.response"]) == {"text": "Hello Ada"}
    assert (ask["flow.role"], ask["flow.node.id"], ask["flow.node.type"]) == ("step", "ask_name", "question")
    assert (ask["session.id"], ask["user.id"], ask["gen_ai.conversation.id"]) == ("s-1", "u-7", "c-3")
    assert (ask["flow.id"], ask["flow.version"]) == ("onboarding", "4")
    assert json.loads(ask["flow.state.before"]) == {"name": None}
    assert json.loads(ask["flow.state.after"]) == {"name": "Ada"}
    assert json.loads(ask["flow.node.details"])["user_response"] == "Ada"
    assert (ask["flow.next_node.id"], ask["flow.connection.type"]) == ("greet", "default")
    assert greet["flow.step.number"] == ask["flow.step.number"] + 1
    # The start marker: a zero-length child of the run.
    (marker,) = conn.execute(
        "SELECT name, start_time_unix_nano = end_time_unix_nano, attributes FROM spans"
        " WHERE attributes ? 'flow.pending'"
    ).fetchall()
    assert marker[0] == "conversation started" and marker[1]
    assert (marker[2]["flow.role"], marker[2]["flow.pending"], marker[2]["session.id"]) == ("run", True, "s-1")
    # The projections.
    (log,) = conn.execute(
        "SELECT status, session_id, user_id, conversation_id, flow_id, request_message, response_message,"
        " failed_nodes, step_count, jsonb_path_query_array(execution_trace, '$[*].node') FROM execution_logs"
    ).fetchall()
    assert log[:5] == ("completed", "s-1", "u-7", "c-3", "onboarding")
    assert json.loads(log[5]) == {"text": "hi"} and json.loads(log[6]) == {"text": "Hello Ada"}
    assert log[7:] == ([], 2, ["ask_name", "greet"])
    steps = conn.execute(
        "SELECT node_id, node_type, step_number, status, state_before, state_after, execution_details,"
        " next_node_id, connection_type FROM flow_execution_steps ORDER BY step_number"
    ).fetchall()
    assert steps == [
        (
            "ask_name",
            "question",
            ask["flow.step.number"],
            "completed",
            {"name": None},
            {"name": "Ada"},
            {"question_text": "What is your name?", "user_response": "Ada"},
            "greet",
            "default",
        ),
        ("greet", "message", greet["flow.step.number"], "completed", {"name": "Ada"}, None, None, None, None),
    ]


def test_step_error_propagates_and_marks_the_span(memory: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """The caller's exception leaves the step unchanged, and the span records it as an error."""
    provider, exporter = memory
    with pytest.raises(KeyError):
        with step("lookup", "script", session_id="s-err", tracer_provider=provider):
            raise KeyError("missing")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    "state",
    [Unprintable(), {"obj": object()}, lambda: 1 / 0, {"big": "x" * (50 * 1024 * 1024)}],
    ids=["raising-repr", "unserializable", "raising-callable", "50MB"],
)
def test_bad_state_never_reaches_the_caller(state: Any, memory: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """Odd or huge state: the decorated function returns its result, and the span keeps a bounded value."""
    provider, exporter = memory

    @step("node", "script", state_before=state, session_id="s-bad", tracer_provider=provider)
    def work(x: int) -> int:
        return x * 2

    assert work(21) == 42
    (span,) = exporter.get_finished_spans()
    value = span.attributes["flow.state.before"]  # type: ignore[index]
    assert isinstance(value, str) and len(value) < 70_000
    json.loads(value)


def test_to_json_truncates_with_a_marker() -> None:
    """Past the limit the JSON is cut and wrapped in a marker object saying so."""
    out = json.loads(to_json(list(range(100_000)), limit=1000))
    assert out[TRUNCATED] is True and len(out["preview"]) == 1000


def test_concurrent_sessions_keep_their_own_step_numbers_and_parents(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Two sessions interleaved in one event loop: each numbers its steps 1..3 under its own run."""
    provider, exporter = memory

    async def conversation(session: str) -> None:
        async with run(f"run {session}", session_id=session, tracer_provider=provider):
            for node in ("a", "b", "c"):
                async with step(f"{session}-{node}", "message", tracer_provider=provider):
                    await asyncio.sleep(0.001)

    async def both() -> None:
        await asyncio.gather(conversation("conc-x"), conversation("conc-y"))

    asyncio.run(both())
    spans = by_name(exporter.get_finished_spans())
    for session in ("conc-x", "conc-y"):
        run_span = spans[f"run {session}"]
        steps = [spans[f"step {session}-{n}"] for n in "abc"]
        assert [s.attributes["flow.step.number"] for s in steps] == [1, 2, 3]  # type: ignore[index]
        assert all(s.parent is not None and s.parent.span_id == run_span.context.span_id for s in steps)
        assert all(s.attributes["session.id"] == session for s in steps)  # type: ignore[index]


def test_without_an_sdk_everything_is_a_no_op() -> None:
    """With a no-op provider, run and step still return results and raise nothing."""
    provider = trace.NoOpTracerProvider()
    with run("r", session_id="s-noop", tracer_provider=provider) as r:
        with step("n", tracer_provider=provider) as st:
            st.state_after({"a": 1})
            st.next("m")
        r.response("ok")

    @step("decorated", tracer_provider=provider)
    async def coro() -> str:
        return "done"

    assert asyncio.run(coro()) == "done"


@pytest.mark.parametrize(
    "value",
    [{1: "a", 2: None}, {"a": {"b": [1, 2.5, None]}}, [1, "x", {"y": b"z"}], {"s": "q" * 70_000}, list(range(300_000))],
    ids=["int-keys", "nested", "list-with-bytes", "long-string", "long-list"],
)
def test_to_json_matches_json_or_truncates(value: Any) -> None:
    """Small values encode exactly as json.dumps would (repr for the unencodable); big ones are cut with a marker."""
    out = to_json(value, limit=65_536)
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    if len(expected) <= 65_536:
        assert out == expected
    else:
        assert json.loads(out)[TRUNCATED] is True


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5) | st.booleans() | st.none(), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=JSONISH, limit=st.integers(1, 400))
def test_the_bounded_encoder_gives_jsons_text_and_cuts_it_at_the_limit(value: Any, limit: int) -> None:
    """Past the small-value path, the output is json's own text, or its first ``limit`` characters in a marker."""
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback)
    assert "".join(_chunks(value, 10**6, set())) == expected
    out = to_json(value, limit=limit)
    if out != expected:  # values that are surely about the limit or under it are written whole
        assert len(expected) > limit
        assert json.loads(out) == {TRUNCATED: True, "preview": expected[:limit]}


def test_a_huge_string_or_buffer_is_never_copied_whole() -> None:
    """A 50 MB string (or bytes) in a state: encoding it allocates about the limit, not 50 MB."""
    assert TRUNCATED in to_json({"big": "x" * 100_000})
    for state in ({"big": "x" * (50 * 1024 * 1024)}, {"blob": b"\x00" * (50 * 1024 * 1024)}):
        tracemalloc.start()
        try:
            out = to_json(state)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(out) < 70_000  # the string cut with a marker, the bytes as the repr of their start
        assert peak < 2 * 1024 * 1024, f"encoding allocated {peak / 2**20:.1f} MiB at its peak"


def test_a_cycle_is_recorded_not_raised() -> None:
    value: dict[str, Any] = {"a": list(range(5000))}
    value["self"] = value
    assert json.loads(to_json(value))["_tracetables_error"] == "not serializable: ValueError"


def test_step_counters_forget_the_least_recent_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the session bound, the least recently stepped session's counter starts again; active ones keep counting."""
    from tracetables.instrumentation import flow, next_step_number

    monkeypatch.setattr(flow, "_steps", flow.Numbering(3))
    assert [next_step_number(s) for s in ("a", "b", "c", "a")] == [1, 1, 1, 2]
    assert next_step_number("d") == 1  # evicts "b", the least recent
    assert len(flow._steps) == 3
    assert next_step_number("a") == 3 and next_step_number("b") == 1


def test_call_attempt_counters_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service calling with a fresh key each time (an order id) keeps at most the bound's keys."""
    from tracetables.instrumentation import calls, next_attempt

    monkeypatch.setattr(calls, "_attempts", calls.Numbering(1000))
    for i in range(5000):
        assert next_attempt(f"order-{i}") == 1
    assert len(calls._attempts) == 1000
    assert next_attempt("order-4999") == 2 and next_attempt("order-0") == 1  # the oldest was forgotten
