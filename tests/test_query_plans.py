"""Every query function runs as index scans on a million spans.

The tables are filled with SQL (a million spans, and projection rows in proportion),
analyzed, and each function's plan is read with EXPLAIN: it must be inlined (no
Function Scan of a tt_ function) and touch every table through an index (no Seq Scan).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

SPANS = 1_000_000
FILL = f"""
INSERT INTO spans (trace_id, span_id, name, start_time_unix_nano, end_time_unix_nano, start_time, end_time,
                   attributes, service_name)
SELECT decode(lpad(to_hex(i / 10), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'), 'op', i, i + 1000,
       now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval, '{{}}', 'svc'
  FROM generate_series(1, {SPANS}) AS i;

INSERT INTO flow_step_rows (trace_id, span_id, session_id, node_id, step_number, status, started_at, completed_at,
                            run_span_id)
SELECT decode(lpad(to_hex(i / 10), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'), 's' || (i / 10),
       'node' || (i % 7), i % 10, CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END,
       now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval, decode(lpad(to_hex(i / 10), 16, '0'), 'hex')
  FROM generate_series(1, {SPANS // 3}) AS i;

INSERT INTO execution_log_rows (trace_id, span_id, flow_id, session_id, user_id, run_status, failed_step_count,
                                started_at)
SELECT decode(lpad(to_hex(i), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'), 'flow' || (i % 50),
       's' || i, 'u' || (i % 20000), (ARRAY['ok', 'error', 'ok', 'running'])[1 + i % 4], (i % 4 = 2)::integer,
       now() - (i || ' minutes')::interval
  FROM generate_series(1, {SPANS // 10}) AS i;

INSERT INTO communication_rows (trace_id, span_id, trace_key, execution_id, attempt_number, workflow_id,
                                  user_id, requested_at, overall_status)
SELECT decode(lpad(to_hex(i / 3), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'), 'k' || (i / 3),
       to_hex(i / 3), 1 + i % 3, 'wf' || (i % 50), 'u' || (i % 20000), now() - (i || ' seconds')::interval,
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'success' END
  FROM generate_series(1, {SPANS // 5}) AS i;

INSERT INTO action_rows (trace_id, span_id, flow_token, concept, action_name, occurred_at, status)
SELECT decode(lpad(to_hex(i / 4), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'),
       lpad(to_hex(i / 4), 32, '0'), 'app://C' || (i % 100), 'a' || (i % 500),
       now() - (i || ' seconds')::interval, 'completed'
  FROM generate_series(1, {SPANS // 5}) AS i;

INSERT INTO provenance_edges (trace_id, span_id, cause_trace_id, cause_span_id, synchronization)
SELECT decode(lpad(to_hex(i / 4), 32, '0'), 'hex'), decode(lpad(to_hex(i), 16, '0'), 'hex'),
       decode(lpad(to_hex((i - 1) / 4), 32, '0'), 'hex'), decode(lpad(to_hex(i - 1), 16, '0'), 'hex'),
       'Sync' || (i % 200)
  FROM generate_series(2, {SPANS // 5}) AS i;
"""

TRUNCATE = (
    "TRUNCATE spans, flow_step_rows, execution_log_rows, communication_rows, action_rows, provenance_edges, event_rows"
)
TRACE = "0" * 24 + format(5000 // 4, "08x")
SPAN = format(5000, "016x")
QUERIES = {
    "trace chain by key": "SELECT * FROM tt_trace_chain('k123')",
    "recent failures of a workflow": "SELECT * FROM tt_recent_failures('wf10')",
    "user history": "SELECT * FROM tt_user_history('u42')",
    "sessions of a flow by status and date": "SELECT * FROM tt_flow_sessions('flow3', with_status => 'failed', "
    "since => now() - interval '2 days')",
    "sessions of a flow by user with errors": "SELECT * FROM tt_flow_sessions('flow42', user_key => 'u42', has_errors => true)",
    "steps of a session": "SELECT * FROM tt_session_steps('s76')",
    "failed steps of a session": "SELECT * FROM tt_session_errors('s76')",
    "a run's execution trace": f"SELECT * FROM tt_run_trace('{'0' * 24 + format(77, '08x')}')",
    "actions by concept prefix": "SELECT * FROM tt_actions(concept_prefix => 'app://C17')",
    "actions by name and time": "SELECT * FROM tt_actions(action => 'a7', since => now() - interval '1 day')",
    "actions by flow token": f"SELECT * FROM tt_actions(token => '{TRACE}')",
    "actions in a time range": "SELECT * FROM tt_actions(since => now() - interval '10 minutes')",
    "producing synchronization": f"SELECT * FROM tt_producing_synchronization('{TRACE}', '{SPAN}')",
    "causal chain": f"SELECT * FROM tt_causal_chain('{TRACE}', '{SPAN}', 20)",
    "actions by synchronization": "SELECT * FROM tt_actions_by_synchronization('Sync5')",
}


@pytest.fixture(scope="module")
def big_db(session_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(session_dsn, autocommit=True) as conn:
        conn.execute(TRUNCATE)
        conn.execute(FILL)
        conn.execute("ANALYZE")
        yield conn
        conn.execute(TRUNCATE)


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_is_an_index_scan(big_db: psycopg.Connection[tuple[Any, ...]], name: str) -> None:
    (plan_json,) = big_db.execute(f"EXPLAIN (FORMAT JSON) {QUERIES[name]}").fetchone()  # type: ignore[misc]
    nodes = list(plan_nodes(plan_json[0]["Plan"]))
    kinds = [n["Node Type"] for n in nodes]
    assert not [n for n in nodes if n["Node Type"] == "Function Scan" and "tt_" in n.get("Function Name", "")], (
        f"{name}: not inlined: {kinds}"
    )
    assert "Seq Scan" not in kinds, f"{name}: {kinds}"
    assert any("Index" in k for k in kinds), f"{name}: {kinds}"


def test_the_data_is_there(big_db: psycopg.Connection[tuple[Any, ...]]) -> None:
    """The plans above are of real queries: they return rows."""
    assert big_db.execute("SELECT count(*) FROM spans").fetchone() == (SPANS,)
    for name, query in QUERIES.items():
        assert big_db.execute(f"SELECT count(*) FROM ({query}) q").fetchone()[0] > 0, name  # type: ignore[index]
    chain = big_db.execute(QUERIES["causal chain"]).fetchall()
    assert [row[0] for row in chain] == list(range(21))  # depth 0..20, capped by max_depth
