"""trace_level: per span, per resource and per flow (tracing_config, changed at run time)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.collector_harness import BASE_CONFIG, RunningCollector, start_collector
from tracetables.collector.extensions.tracing_config import TracingConfigExtension
from tracetables.collector.processors.trace_level import TraceLevelProcessor, summarize_details

STATE = json.dumps({"cart": ["a", "b"], "user": "ada"})
DETAILS = json.dumps(
    {
        "conditions": [{"expression": "x > 1", "result": True}],
        "matched_index": 0,
        "connection_taken": "yes",
        "inputs": {"a": 1, "b": 2},
    }
)
CONFIG = (
    BASE_CONFIG.replace(
        "processors:\n  batch: {timeout: 20ms}", "processors:\n  trace_level: {}\n  batch: {timeout: 20ms}"
    )
    .replace("processors: [batch]", "processors: [trace_level, batch]")
    .replace(
        "service:\n",
        "extensions:\n  tracing_config: {refresh_interval: 100ms}\nservice:\n  extensions: [tracing_config]\n",
    )
)


@pytest.fixture
def leveled(dsn: str) -> Iterator[RunningCollector]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracing_config (flow_id, enabled, level) VALUES"
            " ('quiet', true, 'minimal'), ('loud', true, 'verbose'), ('off', false, 'standard')"
        )
    running = start_collector(dsn, CONFIG)
    try:
        yield running
    finally:
        running.stop()


def send(collector: RunningCollector, name: str, resource: dict[str, Any] | None = None, **attrs: Any) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "bot", **(resource or {})}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10))
    )
    with provider.get_tracer("t").start_as_current_span(
        name,
        attributes={
            "flow.role": "step",
            "flow.node.id": "n",
            "flow.state.before": STATE,
            "flow.node.details": DETAILS,
            **attrs,
        },
    ):
        pass
    provider.shutdown()


def stored(dsn: str, name: str) -> dict[str, Any] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT attributes FROM spans WHERE name = %s", (name,)).fetchone()
    return None if row is None else dict(row[0])


def settings(collector: RunningCollector) -> TracingConfigExtension:
    found = collector.service.extensions["tracing_config"]
    assert isinstance(found, TracingConfigExtension)
    return found


def processor(collector: RunningCollector) -> TraceLevelProcessor:
    found = collector.service._processors["trace_level"]
    assert isinstance(found, TraceLevelProcessor)
    return found


def test_levels_per_flow_span_and_resource(leveled: RunningCollector, dsn: str) -> None:
    send(leveled, "quiet flow", **{"flow.id": "quiet"})
    send(leveled, "loud flow", **{"flow.id": "loud"})
    send(leveled, "unknown flow", **{"flow.id": "new"})
    send(leveled, "span says verbose", **{"flow.id": "quiet", "flow.trace_level": "verbose"})
    send(leveled, "resource says minimal", resource={"flow.trace_level": "minimal"}, **{"flow.id": "loud"})
    send(leveled, "disabled flow", **{"flow.id": "off"})

    quiet = stored(dsn, "quiet flow")
    assert quiet is not None and "flow.state.before" not in quiet and "flow.node.details" not in quiet
    assert quiet["flow.node.id"] == "n"  # the rest of the span stays
    loud = stored(dsn, "loud flow")
    assert loud is not None and loud["flow.state.before"] == STATE and loud["flow.node.details"] == DETAILS
    standard = stored(dsn, "unknown flow")  # no row: the default level, standard
    assert standard is not None and standard["flow.state.before"] == STATE
    assert json.loads(standard["flow.node.details"]) == {
        "conditions": {"@items": 1},
        "matched_index": 0,
        "connection_taken": "yes",
        "inputs": {"@keys": ["a", "b"]},
    }
    override = stored(dsn, "span says verbose")
    assert override is not None and override["flow.node.details"] == DETAILS
    by_resource = stored(dsn, "resource says minimal")
    assert by_resource is not None and "flow.state.before" not in by_resource
    assert stored(dsn, "disabled flow") is None
    assert processor(leveled).dropped_spans == 1


def test_tracing_config_changes_apply_without_restart(leveled: RunningCollector, dsn: str) -> None:
    send(leveled, "before", **{"flow.id": "quiet"})
    before = stored(dsn, "before")
    assert before is not None and "flow.state.before" not in before
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE tracing_config SET level = 'verbose' WHERE flow_id = 'quiet'")
        conn.execute("UPDATE tracing_config SET enabled = true WHERE flow_id = 'off'")
    proc = processor(leveled)
    deadline = time.monotonic() + 10
    while proc.flows["quiet"].level != "verbose" or not proc.flows["off"].enabled:
        assert time.monotonic() < deadline, "tracing_config was not read again"
        time.sleep(0.05)
    send(leveled, "after", **{"flow.id": "quiet"})
    send(leveled, "enabled now", **{"flow.id": "off"})
    after = stored(dsn, "after")
    assert after is not None and after["flow.state.before"] == STATE
    assert stored(dsn, "enabled now") is not None


def test_an_unreadable_database_keeps_the_last_settings(leveled: RunningCollector, dsn: str) -> None:
    ext = settings(leveled)
    known = dict(ext.flows)
    reads = ext.reads
    ext.use_dsn("host=127.0.0.1 port=1 connect_timeout=1")
    import asyncio

    asyncio.run_coroutine_threadsafe(ext.refresh(), leveled.loop).result(timeout=15)
    assert ext.flows == known and known
    assert ext.reads == reads


@pytest.mark.parametrize("text, outline", [
    ('{"a": [1, 2, 3], "b": {"x": 1}, "c": "s", "d": 4}', {"a": {"@items": 3}, "b": {"@keys": ["x"]}, "c": "s", "d": 4}),
    ("[1, 2]", {"@summary": {"@items": 2}}),
    ("not json", {"@summary": {"chars": 8}}),
])  # fmt: skip
def test_summarize_details(text: str, outline: Any) -> None:
    assert json.loads(summarize_details(text)) == outline


@pytest.mark.parametrize("text", [
    '{"a": "\\ud800", "b": "\\u0000"}',  # found by tests/test_fuzz.py: a 500 before
    '{"\\udc00": [1], "c": "caf\\u00e9"}',
])  # fmt: skip
def test_summarize_details_of_a_lone_surrogate_is_valid_utf8(text: str) -> None:
    """JSON may escape a lone surrogate, which UTF-8 cannot hold: the outline escapes it
    again instead of failing (protobuf refuses such a string: the request got a 500)."""
    outline = summarize_details(text)
    outline.encode()  # raises UnicodeEncodeError if not
    assert json.loads(outline) == {k: v if isinstance(v, str) else {"@items": 1} for k, v in json.loads(text).items()}
