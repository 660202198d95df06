"""What the projection tables should hold after a run, and whether they do.

Each template knows how many of its spans have each role (by the project's own rules,
``roles.classify``, which the compiled encoder mirrors), how many links its actions
carry and how many of its calls are retries. The load generator sums those over the
requests acknowledged; after the window, while the collector still runs, one query
counts the tables, and :func:`check` compares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from tracetables.exporters.postgres.roles import Role, classify, facts_of

PROJECTION_TABLES = (
    "flow_execution_steps",
    "execution_logs",
    "communication_traces",
    "action_records",
    "provenance_edges",
    "event_traces",
)
# The tables behind those views (0002_projections.sql), which TRUNCATE needs.
STORAGE_TABLES = (
    "flow_step_rows",
    "execution_log_rows",
    "communication_rows",
    "action_rows",
    "provenance_edges",
    "event_rows",
)
ROLE_NAMES = tuple(r.name.lower() for r in Role)  # none, run, step, call, call_pending, action, event, run_pending

# One round trip, all counts; taken before the collector stops.
COUNTS_SQL = """SELECT
  (SELECT count(*) FROM spans),
  (SELECT count(*) FROM flow_execution_steps),
  (SELECT count(*) FROM execution_logs),
  (SELECT count(*) FROM execution_logs WHERE status = 'running' OR run_status = 'running'),
  (SELECT coalesce(sum(step_count), 0) FROM execution_logs),
  (SELECT count(*) FROM communication_traces),
  (SELECT count(*) FROM communication_traces WHERE overall_status = 'pending'),
  (SELECT count(*) FROM communication_traces WHERE attempt_number > 1),
  (SELECT count(*) FROM action_records),
  (SELECT count(*) FROM provenance_edges),
  (SELECT count(*) FROM event_traces)"""
COUNT_NAMES = (
    "spans",
    "flow_execution_steps",
    "execution_logs",
    "execution_logs running",
    "execution_logs sum(step_count)",
    "communication_traces",
    "communication_traces pending",
    "communication_traces attempt > 1",
    "action_records",
    "provenance_edges",
    "event_traces",
)


def role_counts(request: ExportTraceServiceRequest) -> dict[str, int]:
    """Spans per role name, plus ``links`` (on actions) and ``retries`` (calls with attempt > 1)."""
    counts: Counter[str] = Counter()
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                role = classify(facts_of(span.kind, span.parent_span_id, span.flags, span.attributes))
                counts[role.name.lower()] += 1
                if role == Role.ACTION:
                    counts["links"] += len(span.links)
                elif role == Role.CALL and _attempt(span.attributes) > 1:
                    counts["retries"] += 1
    return dict(counts)


def _attempt(attributes: Iterable[KeyValue]) -> int:
    """The call's attempt as ``tt_project`` reads it: flow.call.attempt, else resend count + 1, else 1."""
    values = {kv.key: kv.value for kv in attributes}
    if "flow.call.attempt" in values and values["flow.call.attempt"].WhichOneof("value") == "int_value":
        return int(values["flow.call.attempt"].int_value)
    if "http.request.resend_count" in values and values["http.request.resend_count"].WhichOneof("value") == "int_value":
        return int(values["http.request.resend_count"].int_value) + 1
    return 1


def role_mix(counts: dict[str, int]) -> str:
    """``step 28.1%, none 24.0%, ...``: share of spans per role, largest first."""
    total = sum(counts.get(name, 0) for name in ROLE_NAMES)
    shares = sorted(((counts.get(n, 0), n) for n in ROLE_NAMES if counts.get(n)), reverse=True)
    return ", ".join(f"{name} {n / total:.1%}" for n, name in shares) if total else "no spans"


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(COUNTS_SQL).fetchone()
    assert row is not None
    return {name: int(value) for name, value in zip(COUNT_NAMES, row, strict=True)}


def truncate_all(dsn: str) -> None:
    """Empty ``spans`` and the six projection tables (one statement, one lock set)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE spans, {', '.join(STORAGE_TABLES)}")


def check(found: dict[str, int], acked: dict[str, int], projections: bool, exact: bool) -> list[tuple[str, bool]]:
    """(line, ok) per check. ``exact``: every call was acknowledged whole, so counts must be
    equal; otherwise a call that failed for the client may still have been committed (>=)."""
    if not projections:  # the flag is off: nothing may be projected
        empty = [t for t in PROJECTION_TABLES if found[t]]
        return [(f"projection tables empty: {'yes' if not empty else 'NO: ' + ', '.join(empty)}", not empty)]
    want = {
        "flow_execution_steps": acked.get("step", 0),
        "execution_logs": acked.get("run", 0),
        "execution_logs running": 0,
        "execution_logs sum(step_count)": acked.get("step", 0),
        "communication_traces": acked.get("call", 0),
        "communication_traces pending": 0,
        "communication_traces attempt > 1": acked.get("retries", 0),
        "action_records": acked.get("action", 0),
        "provenance_edges": acked.get("links", 0),
        "event_traces": acked.get("event", 0),
    }
    out = []
    for name, expected in want.items():
        got = found[name]
        ok = got == expected if exact or expected == 0 else got >= expected
        out.append((f"{name} = {got:,} ({'==' if exact or expected == 0 else '>='} {expected:,})", ok))
    return out
