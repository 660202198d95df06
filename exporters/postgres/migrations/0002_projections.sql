-- Projections: each span with a role (exporters/postgres/roles.py) also becomes a row for
-- that role, written by tt_project() in the same transaction as the raw spans. Every
-- row carries (trace_id, span_id) back to spans, and every one is a function of the
-- spans stored — never of the order they came in — so duplicates and reordering cannot
-- change a table.
--
-- Storage: the projection rows hold the small, indexed columns (ids, session, node,
-- status, times, errors). The bulky values — state snapshots, execution details,
-- payloads, inputs and outputs — stay where they arrived, in spans.attributes, and the
-- views named as DESIGN.md names the tables (flow_execution_steps, execution_logs, …)
-- read them from there through the primary key. Copying them would double the bytes
-- written per span and parse every JSON value twice; bench/ingest measured that as
-- most of the projections' cost.

-- jsonb of a few KB is compressed on write and decompressed on every read; lz4 does
-- both several times faster than the default pglz.
ALTER TABLE spans ALTER COLUMN attributes SET COMPRESSION lz4,
                  ALTER COLUMN events SET COMPRESSION lz4,
                  ALTER COLUMN links SET COMPRESSION lz4,
                  ALTER COLUMN resource_attributes SET COMPRESSION lz4;

-- ---------- helpers ----------

-- An attribute value as jsonb: JSON text parses to its value, anything else stays a
-- JSON string. Never raises (text that looks like JSON but is not stays a string).
CREATE FUNCTION tt_json(v text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    ELSIF v ~ '^\s*[[{"]' OR v ~ '^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)$' THEN
        RETURN v::jsonb;
    END IF;
    RETURN to_jsonb(v);
EXCEPTION WHEN OTHERS THEN
    RETURN to_jsonb(v);
END $$;

-- A text attribute as it reads: a JSON-encoded string unquoted, other text unchanged.
CREATE FUNCTION tt_text(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN v LIKE '"%"' THEN tt_json(v) #>> '{}' ELSE v END;

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

-- ---------- steps ----------

CREATE TABLE flow_step_rows (
    trace_id        bytea       NOT NULL,
    span_id         bytea       NOT NULL,
    parent_span_id  bytea,
    session_id      text,
    user_id         text,
    flow_id         text,
    flow_version    text,
    node_id         text        NOT NULL,
    node_type       text,
    step_number     bigint,
    status          text        NOT NULL CHECK (status IN ('completed', 'failed')),
    connection_type text,
    next_node_id    text,
    started_at      timestamptz,
    completed_at    timestamptz,
    duration_ms     double precision,
    error_message   text,
    error_details   jsonb,
    -- The run the step belongs to: its nearest ancestor run. NULL while that is not
    -- known yet (a span between them, or the run itself, has not arrived).
    run_span_id     bytea,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX flow_step_rows_orphan_idx ON flow_step_rows (trace_id) WHERE run_span_id IS NULL;
CREATE INDEX flow_step_rows_session_step_idx ON flow_step_rows (session_id, step_number);
CREATE INDEX flow_step_rows_session_time_idx ON flow_step_rows (session_id, started_at) WHERE status = 'completed';
CREATE INDEX flow_step_rows_session_error_idx ON flow_step_rows (session_id, node_id) WHERE status = 'failed';

CREATE VIEW flow_execution_steps AS
SELECT f.trace_id, f.span_id, f.parent_span_id, f.session_id, f.user_id, f.flow_id, f.flow_version,
       f.node_id, f.node_type, f.step_number, f.status,
       tt_json(coalesce(s.attributes ->> 'flow.state.before',
                        CASE WHEN s.attributes ? 'openinference.span.kind' THEN s.attributes ->> 'input.value' END))
           AS state_before,
       tt_json(coalesce(s.attributes ->> 'flow.state.after',
                        CASE WHEN s.attributes ? 'openinference.span.kind' THEN s.attributes ->> 'output.value' END))
           AS state_after,
       tt_json(s.attributes ->> 'flow.node.details') AS execution_details,
       f.connection_type, f.next_node_id, f.started_at, f.completed_at, f.duration_ms,
       f.error_message, f.error_details
  FROM flow_step_rows f
  LEFT JOIN spans s ON s.trace_id = f.trace_id AND s.span_id = f.span_id;
COMMENT ON VIEW flow_execution_steps IS
    'One row per step span: a node a flow visited, with state before/after and typed execution details.';

-- ---------- runs ----------

CREATE TABLE execution_log_rows (
    trace_id          bytea       NOT NULL,
    span_id           bytea       NOT NULL,
    flow_id           text,
    flow_version      text,
    session_id        text,
    conversation_id   text,
    user_id           text,
    started_at        timestamptz,
    completed_at      timestamptz,
    total_duration_ms double precision,
    -- From the run span alone: 'running' (only its start marker is stored), 'ok' or 'error'.
    run_status        text        NOT NULL CHECK (run_status IN ('running', 'ok', 'error')),
    run_error         text,
    -- Steps that belong to the run, and how many failed: each step is counted once,
    -- when its run becomes known (flow_step_rows.run_span_id goes from NULL to this run).
    step_count        integer     NOT NULL DEFAULT 0,
    failed_step_count integer     NOT NULL DEFAULT 0,
    -- The span holding the request while the run's own span is not stored: its marker.
    request_span_id   bytea,
    PRIMARY KEY (trace_id, span_id)
) WITH (fillfactor = 80);  -- room on the page: the counter updates stay HOT (no index touched)
CREATE INDEX execution_log_rows_flow_time_idx ON execution_log_rows (flow_id, started_at);
CREATE INDEX execution_log_rows_user_time_idx ON execution_log_rows (user_id, started_at);
CREATE INDEX execution_log_rows_session_time_idx ON execution_log_rows (session_id, started_at);

-- The status and the step summaries are computed from the steps when read: a stored
-- summary would be rewritten by every batch that touches the run.
CREATE VIEW execution_logs AS
SELECT e.trace_id, e.span_id, e.flow_id, e.flow_version, e.session_id, e.conversation_id, e.user_id,
       tt_text(coalesce(s.attributes ->> 'flow.run.request', s.attributes ->> 'input.value')) AS request_message,
       tt_text(coalesce(s.attributes ->> 'flow.run.response', s.attributes ->> 'output.value')) AS response_message,
       CASE WHEN e.run_status = 'running' THEN 'running'
            WHEN e.run_status = 'error' THEN 'failed'
            WHEN e.failed_step_count > 0 THEN 'partial'
            ELSE 'completed' END AS status,
       e.started_at, e.completed_at, e.total_duration_ms,
       coalesce(t.execution_trace, '[]') AS execution_trace,
       coalesce(t.failed_nodes, '{}') AS failed_nodes,
       CASE WHEN e.run_error IS NOT NULL AND t.step_errors IS NOT NULL
            THEN e.run_error || ' (steps: ' || t.step_errors || ')'
            ELSE coalesce(e.run_error, t.step_errors) END AS error_summary,
       e.step_count, e.run_status, e.run_error
  FROM execution_log_rows e
  LEFT JOIN spans s ON s.trace_id = e.trace_id AND s.span_id = coalesce(e.request_span_id, e.span_id)
  LEFT JOIN LATERAL (
      SELECT jsonb_agg(jsonb_build_object(
                 'node', f.node_id, 'node_type', f.node_type, 'step_number', f.step_number, 'status', f.status,
                 'execution_time_ms', f.duration_ms, 'error', f.error_message,
                 'timestamp', tt_utc_text(f.started_at), 'span_id', encode(f.span_id, 'hex'))
                 ORDER BY f.step_number NULLS LAST, f.started_at, f.span_id) AS execution_trace,
             array_agg(f.node_id ORDER BY f.step_number NULLS LAST, f.started_at, f.span_id)
                 FILTER (WHERE f.status = 'failed') AS failed_nodes,
             string_agg(f.node_id || ': ' || coalesce(f.error_message, 'failed'), '; '
                        ORDER BY f.step_number NULLS LAST, f.started_at, f.span_id)
                 FILTER (WHERE f.status = 'failed') AS step_errors
        FROM flow_step_rows f
       WHERE f.trace_id = e.trace_id AND f.run_span_id = e.span_id) AS t ON true;
COMMENT ON VIEW execution_logs IS
    'One row per run: request, response, status (running/completed/failed/partial = it ended well but a step failed), the steps in order, failed nodes.';

-- ---------- calls ----------

CREATE TABLE communication_rows (
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
    http_status_code      integer,
    overall_status        text        NOT NULL CHECK (overall_status IN ('pending', 'in_progress', 'success', 'failed')),
    error_code            text,
    error_detail          text,
    external_execution_id text,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX communication_rows_key_idx ON communication_rows (trace_key, attempt_number);
CREATE INDEX communication_rows_failed_idx ON communication_rows (workflow_id, requested_at) WHERE overall_status = 'failed';
CREATE INDEX communication_rows_user_idx ON communication_rows (user_id, requested_at);

CREATE VIEW communication_traces AS
SELECT c.trace_id, c.span_id, c.trace_key, c.execution_id, c.attempt_number, c.source_service,
       c.destination_service, c.workflow_id, c.action, c.user_id, c.requested_at, c.responded_at, c.duration_ms,
       tt_json(s.attributes ->> 'flow.call.request') AS request_payload,
       tt_json(s.attributes ->> 'flow.call.response') AS response_payload,
       c.http_status_code, c.overall_status, c.error_code, c.error_detail, c.external_execution_id
  FROM communication_rows c
  LEFT JOIN spans s ON s.trace_id = c.trace_id AND s.span_id = c.span_id;
COMMENT ON VIEW communication_traces IS
    'One row per outbound call attempt; trace_key groups the retries of one call. pending rows are replaced by the final span.';
COMMENT ON COLUMN communication_rows.execution_id IS 'The flow token: the hex trace id the call ran in.';

-- ---------- actions and provenance ----------

CREATE TABLE action_rows (
    trace_id       bytea       NOT NULL,
    span_id        bytea       NOT NULL,
    parent_span_id bytea,
    flow_token     text        NOT NULL,
    concept        text,
    action_name    text        NOT NULL,
    occurred_at    timestamptz,
    completed_at   timestamptz,
    status         text        NOT NULL CHECK (status IN ('completed', 'failed')),
    error_message  text,
    session_id     text,
    user_id        text,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX action_rows_concept_idx ON action_rows (concept text_pattern_ops, occurred_at);
CREATE INDEX action_rows_name_idx ON action_rows (action_name, occurred_at);
CREATE INDEX action_rows_token_idx ON action_rows (flow_token, occurred_at);
CREATE INDEX action_rows_time_idx ON action_rows (occurred_at);

CREATE VIEW action_records AS
SELECT a.trace_id, a.span_id, a.parent_span_id, a.flow_token, a.concept, a.action_name,
       tt_json(s.attributes ->> 'flow.action.inputs') AS inputs,
       tt_json(s.attributes ->> 'flow.action.outputs') AS outputs,
       a.occurred_at, a.completed_at, a.status, a.error_message, a.session_id, a.user_id
  FROM action_rows a
  LEFT JOIN spans s ON s.trace_id = a.trace_id AND s.span_id = a.span_id;
COMMENT ON VIEW action_records IS 'One row per action span: concept URI, action name, inputs, outputs; flow_token is the hex trace id.';

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
FROM action_rows GROUP BY flow_token, trace_id;
COMMENT ON VIEW action_traces IS 'Per flow token (trace): its actions, first and last, failures.';

-- ---------- events: the replay store ----------

CREATE TABLE event_rows (
    trace_id    bytea       NOT NULL,
    span_id     bytea       NOT NULL,
    person_id   text,
    session_id  text,
    event_type  text        NOT NULL,
    occurred_at timestamptz,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX event_rows_session_idx ON event_rows (session_id, occurred_at);
CREATE INDEX event_rows_person_idx ON event_rows (person_id, occurred_at);

CREATE VIEW event_traces AS
SELECT e.trace_id, e.span_id, e.person_id, e.session_id, e.event_type,
       tt_json(s.attributes ->> 'flow.event.data') AS event_data,
       tt_json(s.attributes ->> 'flow.context.snapshot') AS context_snapshot,
       e.occurred_at
  FROM event_rows e
  LEFT JOIN spans s ON s.trace_id = e.trace_id AND s.span_id = e.span_id;
COMMENT ON VIEW event_traces IS 'The replay store: one row per event span (person = user.id).';
