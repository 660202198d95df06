-- Projections: each span with a role (exporters/postgres/roles.py) also becomes a row of
-- the table for that role, written by tt_project() in the same transaction as the raw
-- spans. Every projection row carries (trace_id, span_id) back to spans, and every one
-- is a function of the spans stored — never of the order they came in — so duplicates
-- and reordering cannot change a table.

-- ---------- helpers ----------

-- An attribute value as jsonb: JSON text parses to its value, anything else stays a
-- JSON string. Structured values (state, payloads) travel as JSON strings. This fast
-- form raises on text that looks like JSON but is not; tt_project then redoes the
-- batch with tt_json_safe, which never raises.
CREATE FUNCTION tt_json_fast(v text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN v IS NULL THEN NULL
        WHEN v ~ '^\s*[[{"]' OR v ~ '^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)$' THEN v::jsonb
        ELSE to_jsonb(v) END;

CREATE FUNCTION tt_json_safe(v text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN tt_json_fast(v);
EXCEPTION WHEN OTHERS THEN
    RETURN to_jsonb(v);
END $$;

CREATE FUNCTION tt_json(v text, safe boolean) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN safe THEN tt_json_safe(v) ELSE tt_json_fast(v) END;

-- Integer text → bigint, NULL for anything else (never raises).
CREATE FUNCTION tt_int(v text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN v ~ '^-?[0-9]{1,18}$' THEN v::bigint END;

-- The host of a URL, without userinfo, port, path or query.
CREATE FUNCTION tt_url_host(url text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN nullif(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^]/?#]*\]|[^:/?#]*)'), '');

-- An instant as fixed UTC text, so JSON built from it is the same in every session.
CREATE FUNCTION tt_utc_text(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- The last "exception" event's attributes, or NULL.
CREATE FUNCTION tt_exception(events jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN events <> '[]'::jsonb THEN (
        SELECT e.value -> 'attributes' FROM jsonb_array_elements(events) WITH ORDINALITY AS e(value, n)
        WHERE e.value ->> 'name' = 'exception' ORDER BY e.n DESC LIMIT 1) END;

-- ---------- flow_execution_steps: one row per step span ----------

CREATE TABLE flow_execution_steps (
    trace_id          bytea       NOT NULL,
    span_id           bytea       NOT NULL,
    parent_span_id    bytea,
    session_id        text,
    user_id           text,
    flow_id           text,
    flow_version      text,
    node_id           text        NOT NULL,
    node_type         text,
    step_number       bigint,
    status            text        NOT NULL CHECK (status IN ('completed', 'failed')),
    state_before      jsonb,
    state_after       jsonb,
    execution_details jsonb,
    connection_type   text,
    next_node_id      text,
    started_at        timestamptz,
    completed_at      timestamptz,
    duration_ms       double precision,
    error_message     text,
    error_details     jsonb,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX flow_execution_steps_session_step_idx ON flow_execution_steps (session_id, step_number);
CREATE INDEX flow_execution_steps_session_time_idx ON flow_execution_steps (session_id, started_at)
    WHERE status = 'completed';
CREATE INDEX flow_execution_steps_session_error_idx ON flow_execution_steps (session_id, node_id)
    WHERE status = 'failed';
COMMENT ON TABLE flow_execution_steps IS
    'One row per step span: a node a flow visited, with state before/after and typed execution details.';

-- ---------- execution_logs: one row per run ----------

CREATE TABLE execution_logs (
    trace_id          bytea       NOT NULL,
    span_id           bytea       NOT NULL,
    flow_id           text,
    flow_version      text,
    session_id        text,
    conversation_id   text,
    user_id           text,
    request_message   text,
    response_message  text,
    status            text        NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'partial')),
    started_at        timestamptz,
    completed_at      timestamptz,
    total_duration_ms double precision,
    execution_trace   jsonb       NOT NULL DEFAULT '[]',
    failed_nodes      text[]      NOT NULL DEFAULT '{}',
    error_summary     text,
    step_count        integer     NOT NULL DEFAULT 0,
    -- From the run span alone: 'running' (only its start marker is stored), 'ok' or
    -- 'error'; the columns above it that summarise steps are recomputed from the steps.
    run_status        text        NOT NULL CHECK (run_status IN ('running', 'ok', 'error')),
    run_error         text,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX execution_logs_flow_time_idx ON execution_logs (flow_id, started_at);
CREATE INDEX execution_logs_user_time_idx ON execution_logs (user_id, started_at);
CREATE INDEX execution_logs_session_time_idx ON execution_logs (session_id, started_at);
CREATE INDEX execution_logs_failed_idx ON execution_logs (flow_id, started_at) WHERE status IN ('failed', 'partial');
COMMENT ON COLUMN execution_logs.request_message IS
    'The run''s request: text as sent; a JSON-encoded string is unquoted, other JSON is kept as JSON text.';
COMMENT ON TABLE execution_logs IS
    'One row per run: request, response, status (running/completed/failed/partial), the steps in order, failed nodes.';

-- ---------- communication_traces: one row per call attempt ----------

CREATE TABLE communication_traces (
    trace_id              bytea       NOT NULL,
    span_id               bytea       NOT NULL,
    trace_key             text        NOT NULL,
    execution_id          text        NOT NULL,
    attempt_number        integer     NOT NULL,
    source_service        text,
    destination_service   text,
    workflow_id           text,
    action                text,
    user_id               text,
    requested_at          timestamptz,
    responded_at          timestamptz,
    duration_ms           double precision,
    request_payload       jsonb,
    response_payload      jsonb,
    http_status_code      integer,
    overall_status        text        NOT NULL CHECK (overall_status IN ('pending', 'in_progress', 'success', 'failed')),
    error_code            text,
    error_detail          text,
    external_execution_id text,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX communication_traces_key_idx ON communication_traces (trace_key, attempt_number);
CREATE INDEX communication_traces_failed_idx ON communication_traces (workflow_id, requested_at)
    WHERE overall_status = 'failed';
CREATE INDEX communication_traces_user_idx ON communication_traces (user_id, requested_at);
COMMENT ON TABLE communication_traces IS
    'One row per outbound call attempt; trace_key groups the retries of one call. pending rows are replaced by the final span.';
COMMENT ON COLUMN communication_traces.execution_id IS 'The flow token: the hex trace id the call ran in.';

-- ---------- actions and provenance ----------

CREATE TABLE action_records (
    trace_id       bytea       NOT NULL,
    span_id        bytea       NOT NULL,
    parent_span_id bytea,
    flow_token     text        NOT NULL,
    concept        text,
    action_name    text        NOT NULL,
    inputs         jsonb,
    outputs        jsonb,
    occurred_at    timestamptz,
    completed_at   timestamptz,
    status         text        NOT NULL CHECK (status IN ('completed', 'failed')),
    error_message  text,
    session_id     text,
    user_id        text,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX action_records_concept_idx ON action_records (concept text_pattern_ops, occurred_at);
CREATE INDEX action_records_name_idx ON action_records (action_name, occurred_at);
CREATE INDEX action_records_token_idx ON action_records (flow_token, occurred_at);
CREATE INDEX action_records_time_idx ON action_records (occurred_at);
COMMENT ON TABLE action_records IS 'One row per action span: concept URI, action name, inputs, outputs; flow_token is the hex trace id.';

CREATE TABLE provenance_edges (
    trace_id        bytea NOT NULL,  -- the action caused
    span_id         bytea NOT NULL,
    cause_trace_id  bytea NOT NULL,  -- the action that caused it (maybe in another trace)
    cause_span_id   bytea NOT NULL,
    synchronization text,
    PRIMARY KEY (trace_id, span_id, cause_trace_id, cause_span_id)
);
CREATE INDEX provenance_edges_cause_idx ON provenance_edges (cause_trace_id, cause_span_id);
CREATE INDEX provenance_edges_sync_idx ON provenance_edges (synchronization);
COMMENT ON TABLE provenance_edges IS
    'One edge per span link of an action: cause → effect, named by the link''s flow.synchronization.';

CREATE VIEW action_traces AS
SELECT flow_token,
       trace_id,
       count(*)         AS action_count,
       min(occurred_at) AS first_action_at,
       max(coalesce(completed_at, occurred_at)) AS last_action_at,
       count(*) FILTER (WHERE status = 'failed') AS failed_actions
FROM action_records GROUP BY flow_token, trace_id;
COMMENT ON VIEW action_traces IS 'Per flow token (trace): its actions, first and last, failures.';

-- ---------- event_traces: the replay store ----------

CREATE TABLE event_traces (
    trace_id         bytea       NOT NULL,
    span_id          bytea       NOT NULL,
    person_id        text,
    session_id       text,
    event_type       text        NOT NULL,
    event_data       jsonb,
    context_snapshot jsonb,
    occurred_at      timestamptz,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX event_traces_session_idx ON event_traces (session_id, occurred_at);
CREATE INDEX event_traces_person_idx ON event_traces (person_id, occurred_at);
COMMENT ON TABLE event_traces IS 'The replay store: one row per event span (person = user.id).';
