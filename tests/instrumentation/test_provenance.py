"""action() and event(): causal links across traces, refs that travel as strings, replay events."""

from __future__ import annotations

import json

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.collector_harness import RunningCollector
from tracetables.instrumentation import ActionRef, action, event, run


def test_action_chain_across_traces_lands_as_linked_spans(
    collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Web → Auth → AudioPlayer, each in its own trace, the last cause passed as a string: links carry the syncs."""
    provider = TracerProvider(resource=Resource.create({"service.name": "player"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url, timeout=10)))
    with action("Web", "handle_request", inputs={"path": "/play/42"}, tracer_provider=provider) as web:
        web.outputs({"status": 200})
    with action("Auth", "validate_token", caused_by=[(web, "OnWebRequest")], tracer_provider=provider) as auth:
        pass
    assert auth.ref is not None
    carried = auth.ref.to_string()  # as a queue message header would carry it
    cause = ActionRef.from_string(carried)
    assert cause is not None
    with action(
        "AudioPlayer",
        "play_passage",
        inputs={"passage": 42},
        caused_by=[(cause, "OnAuthSuccess")],
        tracer_provider=provider,
    ):
        pass
    provider.shutdown()
    rows = {
        name: (encode_trace, encode_span, attrs, links)
        for name, encode_trace, encode_span, attrs, links in conn.execute(
            "SELECT name, encode(trace_id, 'hex'), encode(span_id, 'hex'), attributes, links FROM spans"
        ).fetchall()
    }
    assert set(rows) == {"Web::handle_request", "Auth::validate_token", "AudioPlayer::play_passage"}
    web_row, auth_row, play_row = (
        rows["Web::handle_request"],
        rows["Auth::validate_token"],
        rows["AudioPlayer::play_passage"],
    )
    assert len({web_row[0], auth_row[0], play_row[0]}) == 3  # three traces
    assert web_row[2]["flow.role"] == "action" and web_row[2]["flow.action.concept"] == "Web"
    assert json.loads(web_row[2]["flow.action.outputs"]) == {"status": 200}
    (to_web,) = auth_row[3]
    assert (to_web["trace_id"], to_web["span_id"]) == (web_row[0], web_row[1])
    assert to_web["attributes"] == {"flow.synchronization": "OnWebRequest"}
    (to_auth,) = play_row[3]
    assert (to_auth["trace_id"], to_auth["span_id"]) == (auth_row[0], auth_row[1])
    assert to_auth["attributes"] == {"flow.synchronization": "OnAuthSuccess"}
    assert json.loads(play_row[2]["flow.action.inputs"]) == {"passage": 42}


@pytest.mark.parametrize("text", ["", "nonsense", "0" * 32 + "-" + "0" * 16, "zz" * 16 + "-" + "01" * 8, "ab-cd"])
def test_action_ref_from_bad_string_is_none(text: str) -> None:
    """A reference that is not one parses to None: never an exception in the consumer."""
    assert ActionRef.from_string(text) is None


def test_bad_cause_costs_the_link_not_the_action() -> None:
    """A cause that is neither an Action nor an ActionRef is dropped; the action is still recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with action("X", "y", caused_by=[("not a ref", "Sync")], tracer_provider=provider):  # type: ignore[list-item]
        pass
    (span,) = exporter.get_finished_spans()
    assert span.name == "X::y" and not span.links


def test_event_records_type_data_and_snapshot_in_its_session() -> None:
    """An event inside a run carries the run's session and user, its type, data and context snapshot."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with run("r", session_id="s-ev", user_id="person-1", tracer_provider=provider):
        with event("passage_played", data={"passage": 42}, context_snapshot={"volume": 7}, tracer_provider=provider):
            pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    attrs = spans["event passage_played"].attributes
    assert attrs is not None
    assert attrs["flow.role"] == "event" and attrs["flow.event.type"] == "passage_played"
    assert json.loads(str(attrs["flow.event.data"])) == {"passage": 42}
    assert json.loads(str(attrs["flow.context.snapshot"])) == {"volume": 7}
    assert (attrs["session.id"], attrs["user.id"]) == ("s-ev", "person-1")
