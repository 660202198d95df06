"""Log records carry trace, span, session and node; configure() sets up a working SDK pipeline."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.collector_harness import RunningCollector
from tracetables.instrumentation import TraceContextFilter, add_trace_context, run, step


def test_log_records_inside_a_step_carry_its_ids(caplog: pytest.LogCaptureFixture) -> None:
    """A record logged in a step has the step's trace id, span id, session and node; outside, empty strings."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = logging.getLogger("tests.instrumentation.joined")
    log.addFilter(TraceContextFilter())
    caplog.set_level(logging.INFO, logger="tests.instrumentation.joined")
    with run("r", session_id="s-log", tracer_provider=provider):
        with step("ask", "question", tracer_provider=provider):
            log.info("inside")
    log.info("outside")
    inside, outside = caplog.records
    (ask,) = [s for s in exporter.get_finished_spans() if s.name == "step ask"]
    assert inside.trace_id == format(ask.context.trace_id, "032x")  # type: ignore[attr-defined]
    assert inside.span_id == format(ask.context.span_id, "016x")  # type: ignore[attr-defined]
    assert (inside.session_id, inside.node_id) == ("s-log", "ask")  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.session_id, outside.node_id) == ("", "", "")  # type: ignore[attr-defined]
    event = add_trace_context(None, "info", {"event": "x"})
    assert event == {"event": "x"}  # nothing set outside a span


def test_configure_exports_to_the_collector(
    collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """In a fresh process: configure() + the global tracer + step() → the span is in `spans` with its service."""
    script = textwrap.dedent(f"""
        from tracetables.instrumentation import configure, step
        provider = configure(endpoint="{collector.http_url}", service_name="configured-svc")
        with step("n1", "message", session_id="s-conf"):
            pass
        provider.shutdown()
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert conn.execute("SELECT name, service_name, attributes->>'session.id' FROM spans").fetchall() == [
        ("step n1", "configured-svc", "s-conf")
    ]
