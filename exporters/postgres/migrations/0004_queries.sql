-- The questions people and agents ask, as SQL functions. Each is a plain SQL function
-- that PostgreSQL inlines into the calling query, so it plans with the arguments'
-- values and runs as index scans (tests/test_query_plans.py checks every plan on a
-- million spans). Ids are hex text, as tools print them. A NULL filter is no filter.

-- Every attempt of one call, in order: "which attempt of this webhook failed and why?"
CREATE FUNCTION tt_trace_chain(key text) RETURNS SETOF communication_traces
    LANGUAGE sql STABLE AS $$
    SELECT * FROM communication_traces WHERE trace_key = key ORDER BY attempt_number, requested_at
$$;

-- The latest failed calls of one workflow.
CREATE FUNCTION tt_recent_failures(workflow text, max_rows integer DEFAULT 50) RETURNS SETOF communication_traces
    LANGUAGE sql STABLE AS $$
    SELECT * FROM communication_traces
     WHERE workflow_id = workflow AND overall_status = 'failed'
     ORDER BY requested_at DESC LIMIT max_rows
$$;

-- A user's runs, newest first.
CREATE FUNCTION tt_user_history(user_key text, max_rows integer DEFAULT 50) RETURNS SETOF execution_logs
    LANGUAGE sql STABLE AS $$
    SELECT * FROM execution_logs WHERE user_id = user_key ORDER BY started_at DESC LIMIT max_rows
$$;

-- Runs of one flow, newest first, filtered: status, user, time range, only those with errors.
CREATE FUNCTION tt_flow_sessions(flow text, with_status text DEFAULT NULL, user_key text DEFAULT NULL,
                                 since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                                 has_errors boolean DEFAULT NULL, max_rows integer DEFAULT 100)
    RETURNS SETOF execution_logs
    LANGUAGE sql STABLE AS $$
    SELECT * FROM execution_logs
     WHERE flow_id = flow
       AND (with_status IS NULL OR status = with_status)
       AND (user_key IS NULL OR user_id = user_key)
       AND started_at >= coalesce(since, '-infinity') AND started_at < coalesce(until, 'infinity')
       AND (has_errors IS NULL OR (status IN ('failed', 'partial')) = has_errors)
     ORDER BY started_at DESC LIMIT max_rows
$$;

-- The steps of one session in order: "why did user X get this response?"
CREATE FUNCTION tt_session_steps(session text) RETURNS SETOF flow_execution_steps
    LANGUAGE sql STABLE AS $$
    SELECT * FROM flow_execution_steps WHERE session_id = session ORDER BY step_number, started_at
$$;

-- The failed steps of one session, by node.
CREATE FUNCTION tt_session_errors(session text) RETURNS SETOF flow_execution_steps
    LANGUAGE sql STABLE AS $$
    SELECT * FROM flow_execution_steps WHERE session_id = session AND status = 'failed' ORDER BY node_id, started_at
$$;

-- One run's execution trace, one row per step (the trace's runs when span_hex is NULL).
CREATE FUNCTION tt_run_trace(trace_hex text, span_hex text DEFAULT NULL)
    RETURNS TABLE (run_span_id text, status text, step_index integer, node text, node_type text,
                   step_status text, execution_time_ms double precision, error text, "timestamp" text)
    LANGUAGE sql STABLE AS $$
    SELECT encode(e.span_id, 'hex'), e.status, s.n::integer, s.step ->> 'node', s.step ->> 'node_type',
           s.step ->> 'status', (s.step ->> 'execution_time_ms')::double precision, s.step ->> 'error',
           s.step ->> 'timestamp'
      FROM execution_logs e
     CROSS JOIN LATERAL jsonb_array_elements(e.execution_trace) WITH ORDINALITY AS s(step, n)
     WHERE e.trace_id = decode(trace_hex, 'hex') AND (span_hex IS NULL OR e.span_id = decode(span_hex, 'hex'))
     ORDER BY e.started_at, e.span_id, s.n
$$;

-- Actions by filter: concept URI prefix, action name, time range, flow token (hex trace id).
CREATE FUNCTION tt_actions(concept_prefix text DEFAULT NULL, action text DEFAULT NULL,
                           since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                           token text DEFAULT NULL, max_rows integer DEFAULT 100)
    RETURNS SETOF action_records
    LANGUAGE sql STABLE AS $$
    SELECT * FROM action_records
     WHERE (concept_prefix IS NULL OR concept ^@ concept_prefix)
       AND (action IS NULL OR action_name = action)
       AND (token IS NULL OR flow_token = token)
       AND occurred_at >= coalesce(since, '-infinity') AND occurred_at < coalesce(until, 'infinity')
     ORDER BY occurred_at DESC LIMIT max_rows
$$;

-- What produced an action: its causes, each with the synchronization that links them.
CREATE FUNCTION tt_producing_synchronization(trace_hex text, span_hex text)
    RETURNS TABLE (synchronization text, cause_trace_id text, cause_span_id text, cause_concept text,
                   cause_action text, cause_occurred_at timestamptz)
    LANGUAGE sql STABLE AS $$
    SELECT p.synchronization, encode(p.cause_trace_id, 'hex'), encode(p.cause_span_id, 'hex'),
           a.concept, a.action_name, a.occurred_at
      FROM provenance_edges p
      LEFT JOIN action_records a ON a.trace_id = p.cause_trace_id AND a.span_id = p.cause_span_id
     WHERE p.trace_id = decode(trace_hex, 'hex') AND p.span_id = decode(span_hex, 'hex')
     ORDER BY p.synchronization, p.cause_trace_id, p.cause_span_id
$$;

-- The causal chain from an action back to its root causes, across traces: depth 0 is
-- the action itself; each row names the synchronization that led to the row before it.
-- "Why did passage 42 play?"
CREATE FUNCTION tt_causal_chain(trace_hex text, span_hex text, max_depth integer DEFAULT 100)
    RETURNS TABLE (depth integer, trace_id text, span_id text, concept text, action text,
                   synchronization text, occurred_at timestamptz)
    LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (depth, trace_id, span_id, synchronization, path) AS (
        SELECT 0, decode(trace_hex, 'hex'), decode(span_hex, 'hex'), NULL::text,
               ARRAY[decode(trace_hex, 'hex') || decode(span_hex, 'hex')]
        UNION ALL
        SELECT c.depth + 1, p.cause_trace_id, p.cause_span_id, p.synchronization,
               c.path || (p.cause_trace_id || p.cause_span_id)
          FROM chain c
          JOIN provenance_edges p ON p.trace_id = c.trace_id AND p.span_id = c.span_id
         WHERE c.depth < max_depth AND NOT (p.cause_trace_id || p.cause_span_id) = ANY (c.path)
    )
    SELECT c.depth, encode(c.trace_id, 'hex'), encode(c.span_id, 'hex'), a.concept, a.action_name,
           c.synchronization, a.occurred_at
      FROM chain c
      LEFT JOIN action_records a ON a.trace_id = c.trace_id AND a.span_id = c.span_id
     ORDER BY c.depth, c.trace_id, c.span_id
$$;

-- Every action a synchronization produced, with its cause.
CREATE FUNCTION tt_actions_by_synchronization(sync text, max_rows integer DEFAULT 100)
    RETURNS TABLE (trace_id text, span_id text, concept text, action text, occurred_at timestamptz,
                   cause_trace_id text, cause_span_id text)
    LANGUAGE sql STABLE AS $$
    SELECT encode(p.trace_id, 'hex'), encode(p.span_id, 'hex'), a.concept, a.action_name, a.occurred_at,
           encode(p.cause_trace_id, 'hex'), encode(p.cause_span_id, 'hex')
      FROM provenance_edges p
      LEFT JOIN action_records a ON a.trace_id = p.trace_id AND a.span_id = p.span_id
     WHERE p.synchronization = sync
     ORDER BY p.trace_id, p.span_id LIMIT max_rows
$$;
