"""Arrival order never changes the projections.

A run's spans — the run, its start marker, steps (some nested, some failing), a plain
span between run and steps, calls with their pending markers, a nested run — are
delivered once in one batch, then again in hypothesis-chosen orders, splits and
duplicates, over one or two concurrent writers (each batch its own transaction, as the
exporter writes them). execution_logs, flow_execution_steps and communication_traces
must come out identical every time.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.otlp_wire import make_request
from tracetables.collector.errors import RetryableError
from tracetables.exporters.postgres.encoder import encode_request
from tracetables.exporters.postgres.writer import SpanWriter

T0 = 1_700_000_000_000_000_000
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")


def _span(span_id: int, parent: int | None, name: str, start: int, end: int, error: bool = False, **attrs: Any) -> Span:
    span = Span(
        trace_id=TRACE,
        span_id=span_id.to_bytes(8, "big"),
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        start_time_unix_nano=T0 + start * 1_000_000,
        end_time_unix_nano=T0 + end * 1_000_000,
    )
    for key, value in attrs.items():
        if isinstance(value, bool):
            span.attributes.append(KeyValue(key=key, value=AnyValue(bool_value=value)))
        elif isinstance(value, int):
            span.attributes.append(KeyValue(key=key, value=AnyValue(int_value=value)))
        else:
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=f"{name} failed"))
        event = span.events.add(name="exception", time_unix_nano=T0 + end * 1_000_000)
        event.attributes.append(KeyValue(key="exception.type", value=AnyValue(string_value="RuntimeError")))
        event.attributes.append(KeyValue(key="exception.message", value=AnyValue(string_value=f"{name} broke")))
    return span


@dataclass(frozen=True)
class Shape:
    steps: list[tuple[bool, bool, int]]  # (failed, numbered, parent choice)
    run_failed: bool
    marker: bool
    intermediate: bool
    calls: list[bool]  # per call: failed
    nested_run: bool


shapes = st.builds(
    Shape,
    steps=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 2)), min_size=1, max_size=6),
    run_failed=st.booleans(),
    marker=st.booleans(),
    intermediate=st.booleans(),
    calls=st.lists(st.booleans(), max_size=2),
    nested_run=st.booleans(),
)


def build(shape: Shape) -> list[Span]:
    """The spans of one run, in the order an SDK would end them (children first)."""
    run_id, plain_id = 1, 2
    spans = []
    if shape.marker:
        spans.append(
            _span(
                3,
                run_id,
                "run pending",
                0,
                0,
                **{"flow.role": "run", "flow.pending": True, "session.id": "s", "flow.run.request": "hi"},
            )
        )
    step_ids: list[int] = []
    for i, (failed, numbered, parent_choice) in enumerate(shape.steps):
        sid = 100 + i
        if parent_choice == 1 and shape.intermediate:
            parent = plain_id
        elif parent_choice == 2 and step_ids:
            parent = step_ids[0]  # a step inside a step: still the run's
        else:
            parent = run_id
        attrs: dict[str, Any] = {
            "flow.role": "step",
            "flow.node.id": f"node{i % 3}",
            "session.id": "s",
            "flow.state.before": f'{{"i": {i}}}',
        }
        if numbered:
            attrs["flow.step.number"] = i + 1
        spans.append(_span(sid, parent, f"step{i}", 10 * i + 1, 10 * i + 5, failed, **attrs))
        step_ids.append(sid)
        if i < len(shape.calls):
            call_id = 200 + i
            spans.append(
                _span(
                    300 + i,
                    call_id,
                    "hook pending",
                    10 * i + 2,
                    10 * i + 2,
                    **{"flow.role": "call", "flow.pending": True, "flow.call.key": f"k{i}", "flow.call.attempt": 1},
                )
            )
            spans.append(
                _span(
                    call_id,
                    sid,
                    "hook",
                    10 * i + 2,
                    10 * i + 4,
                    shape.calls[i],
                    **{
                        "flow.role": "call",
                        "flow.call.key": f"k{i}",
                        "flow.call.attempt": 1,
                        "flow.call.response": '{"ok": %s}' % ("false" if shape.calls[i] else "true"),
                    },
                )
            )
    if shape.nested_run:
        spans.append(_span(400, 401, "inner step", 70, 71, **{"flow.role": "step", "flow.node.id": "inner"}))
        spans.append(_span(401, step_ids[-1], "inner run", 69, 72, **{"flow.role": "run"}))
    if shape.intermediate:
        spans.append(_span(plain_id, run_id, "plain work", 0, 90))
    spans.append(
        _span(
            run_id,
            None,
            "run",
            0,
            100,
            shape.run_failed,
            **{"flow.role": "run", "session.id": "s", "flow.run.request": "hi", "flow.run.response": "bye"},
        )
    )
    return spans


SNAPSHOT = {
    "execution_logs": "SELECT * FROM execution_logs ORDER BY trace_id, span_id",
    "flow_execution_steps": "SELECT * FROM flow_execution_steps ORDER BY trace_id, span_id",
    "communication_traces": "SELECT * FROM communication_traces ORDER BY trace_id, span_id",
}


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {table: conn.execute(query).fetchall() for table, query in SNAPSHOT.items()}


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE spans, execution_log_rows, flow_step_rows, communication_rows,"
            " action_rows, provenance_edges, event_rows"
        )


async def deliver(dsn: str, batches: list[list[Span]], writers: int) -> None:
    pool = [SpanWriter(dsn) for _ in range(writers)]

    async def run(writer: SpanWriter, mine: list[list[Span]]) -> None:
        for batch in mine:
            encoded = encode_request(make_request(*batch).SerializeToString())
            for attempt in range(5):  # as the exporter does: a deadlock between writers is retried
                try:
                    await writer.write(encoded.data, encoded.rows, encoded.keys)
                    break
                except RetryableError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(run(w, batches[i::writers]) for i, w in enumerate(pool)))
    finally:
        for w in pool:
            await w.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=shapes,
    seed=st.integers(0, 2**32 - 1),
    cuts=st.integers(0, 6),
    duplicates=st.integers(0, 4),
    writers=st.integers(1, 2),
    late_plain=st.booleans(),
)
def test_projections_do_not_depend_on_arrival(
    dsn: str, shape: Shape, seed: int, cuts: int, duplicates: int, writers: int, late_plain: bool
) -> None:
    spans = build(shape)
    reset(dsn)
    asyncio.run(deliver(dsn, [spans], 1))
    expected = snapshot(dsn)
    assert len(expected["execution_logs"]) == 1 + shape.nested_run
    assert len(expected["flow_execution_steps"]) == len(shape.steps) + shape.nested_run

    rng = random.Random(seed)
    shuffled = spans + [rng.choice(spans) for _ in range(duplicates)]
    rng.shuffle(shuffled)
    points = sorted(rng.sample(range(1, len(shuffled)), min(cuts, len(shuffled) - 1)))
    batches = [shuffled[a:b] for a, b in zip([0, *points], [*points, len(shuffled)], strict=True)]
    if late_plain and shape.intermediate:  # the span between run and steps comes last, alone
        plain = [s for s in spans if s.name == "plain work"]
        batches = [[s for s in b if s.name != "plain work"] for b in batches] + [plain]
        writers = 1
    reset(dsn)
    asyncio.run(deliver(dsn, batches, writers))
    assert snapshot(dsn) == expected


def test_expected_summary_of_a_known_shape(dsn: str) -> None:
    """The invariant above could hold for a wrong answer: pin one shape's summary down."""
    shape = Shape(
        steps=[(False, True, 0), (True, False, 1), (False, False, 2)],
        run_failed=False,
        marker=True,
        intermediate=True,
        calls=[True],
        nested_run=True,
    )
    reset(dsn)
    asyncio.run(deliver(dsn, [[s] for s in reversed(build(shape))], 2))
    with psycopg.connect(dsn) as conn:
        logs = conn.execute(
            "SELECT span_id, status, failed_nodes, step_count, error_summary,"
            " jsonb_path_query_array(execution_trace, '$[*].node') FROM execution_logs"
            " ORDER BY span_id"
        ).fetchall()
        calls = conn.execute("SELECT overall_status, error_code, response_payload FROM communication_traces").fetchall()
    assert logs == [
        ((1).to_bytes(8, "big"), "partial", ["node1"], 3, "node1: step1 broke", ["node0", "node1", "node2"]),
        ((401).to_bytes(8, "big"), "completed", [], 1, None, ["inner"]),
    ]
    assert calls == [("failed", "RuntimeError", {"ok": False})]
