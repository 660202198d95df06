-- tt_project(keys): project a batch just written to spans into the role tables.
--
-- keys holds 25 bytes per span of the batch: trace_id (16), span_id (8), role (1), the
-- role codes of exporters/postgres/roles.py (1 run, 2 step, 3 call, 4 call pending
-- marker, 5 action, 6 event, 7 run start marker). The exporter calls it in the same
-- transaction as the COPY into spans, once per batch: no per-span round trip.
--
-- Only small columns are written (see 0002): no JSON value is parsed here, except an
-- OpenInference span's metadata, and no bulky value is copied.
--
-- Order invariance: per-span rows depend on their span alone (a pending call row gives
-- way to the final span's, never the reverse). A step's run (its nearest ancestor run)
-- is set once, from NULL, as soon as the spans between them are stored — at insert when
-- its parent is the run, else when the missing span arrives — and the run's step
-- counters move exactly then; the run's summary is computed from its steps when read.
-- Batches holding runs or steps of the same trace take a per-trace advisory lock (in
-- sorted order) first, so two writers cannot each miss the other's spans.

CREATE FUNCTION tt_project(keys bytea) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    n        integer := octet_length(keys) / 25;
    t_ids    bytea[];
    s_ids    bytea[];
    roles    integer[];
    traces   bytea[];
    lock_key integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(substr(keys, i * 25 + 1, 16)), array_agg(substr(keys, i * 25 + 17, 8)),
           array_agg(get_byte(keys, i * 25 + 24))
      INTO t_ids, s_ids, roles
      FROM generate_series(0, n - 1) AS i;

    -- Runs and steps: lock their traces in order, then write runs (and run markers) before
    -- steps, so a step whose parent is its run finds it.
    SELECT array_agg(DISTINCT k.trace_id) INTO traces
      FROM unnest(t_ids, roles) AS k(trace_id, role) WHERE k.role IN (1, 2, 7);
    FOR lock_key IN SELECT DISTINCT ('x' || encode(substr(t, 1, 4), 'hex'))::bit(32)::integer
                      FROM unnest(traces) AS t ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1953759233, lock_key);  -- 0x74740001: "tt", lock space 1
    END LOOP;

    INSERT INTO execution_log_rows AS e (trace_id, span_id, flow_id, flow_version, session_id, conversation_id,
        user_id, started_at, completed_at, total_duration_ms, run_status, run_error, request_span_id)
    SELECT DISTINCT ON (s.trace_id, s.span_id)
           s.trace_id, s.span_id, x."flow.id", x."flow.version", x."session.id",
           coalesce(x."gen_ai.conversation.id", x."session.id"), x."user.id",
           s.start_time, s.end_time, (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
           CASE WHEN s.status_code = 2 THEN 'error' ELSE 'ok' END,
           CASE WHEN s.status_code = 2 THEN coalesce(ex.a ->> 'exception.message', nullif(s.status_message, ''), 'failed') END,
           NULL
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
           "flow.id" text, "flow.version" text, "session.id" text, "gen_ai.conversation.id" text, "user.id" text)
      LEFT JOIN LATERAL (SELECT e.value -> 'attributes' AS a
                           FROM jsonb_array_elements(s.events) WITH ORDINALITY AS e(value, n)
                          WHERE s.status_code = 2 AND s.events <> '[]'::jsonb AND e.value ->> 'name' = 'exception'
                          ORDER BY e.n DESC LIMIT 1) AS ex ON true
     WHERE k.role = 1
     ORDER BY s.trace_id, s.span_id
    ON CONFLICT (trace_id, span_id) DO UPDATE SET
        flow_id = excluded.flow_id, flow_version = excluded.flow_version, session_id = excluded.session_id,
        conversation_id = excluded.conversation_id, user_id = excluded.user_id,
        started_at = excluded.started_at, completed_at = excluded.completed_at,
        total_duration_ms = excluded.total_duration_ms, run_status = excluded.run_status,
        run_error = excluded.run_error, request_span_id = NULL;

    -- A run's start marker: a running row for the marker's parent, until the run's span comes.
    INSERT INTO execution_log_rows (trace_id, span_id, flow_id, flow_version, session_id, conversation_id,
        user_id, started_at, run_status, request_span_id)
    SELECT DISTINCT ON (s.trace_id, s.parent_span_id)
           s.trace_id, s.parent_span_id, x."flow.id", x."flow.version", x."session.id",
           coalesce(x."gen_ai.conversation.id", x."session.id"), x."user.id",
           s.start_time, 'running', s.span_id
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
           "flow.id" text, "flow.version" text, "session.id" text, "gen_ai.conversation.id" text, "user.id" text)
     WHERE k.role = 7 AND octet_length(s.parent_span_id) = 8
     ORDER BY s.trace_id, s.parent_span_id, s.span_id
    ON CONFLICT (trace_id, span_id) DO NOTHING;


    -- Steps. An OpenInference span below a LangGraph node (a branch function, an inner
    -- runnable) names that node in its metadata: it is part of the node's visit, not a step.
    -- A step whose parent is a stored run (or run marker) belongs to it at once.
    WITH inserted AS (
    INSERT INTO flow_step_rows (trace_id, span_id, parent_span_id, session_id, user_id, flow_id, flow_version,
        node_id, node_type, step_number, status, connection_type, next_node_id, started_at, completed_at,
        duration_ms, error_message, error_details, run_span_id)
    SELECT s.trace_id, s.span_id, s.parent_span_id,
           coalesce(x."session.id", x."gen_ai.conversation.id"), x."user.id", x."flow.id", x."flow.version",
           coalesce(x."flow.node.id", m.meta ->> 'langgraph_node', x."gen_ai.agent.name", s.name),
           coalesce(x."flow.node.type", lower(x."openinference.span.kind"),
                    CASE WHEN x."gen_ai.operation.name" IS NOT NULL THEN 'agent' END),
           coalesce(tt_int(x."flow.step.number"), tt_int(m.meta ->> 'langgraph_step')),
           CASE WHEN s.status_code = 2 THEN 'failed' ELSE 'completed' END,
           x."flow.connection.type", x."flow.next_node.id",
           s.start_time, s.end_time, (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
           CASE WHEN s.status_code = 2 THEN coalesce(ex.a ->> 'exception.message', nullif(s.status_message, ''), 'failed') END,
           CASE WHEN ex.a IS NOT NULL THEN jsonb_strip_nulls(jsonb_build_object(
               'type', ex.a ->> 'exception.type', 'message', ex.a ->> 'exception.message',
               'stacktrace', ex.a ->> 'exception.stacktrace', 'status_message', nullif(s.status_message, '')))
               WHEN s.status_code = 2 THEN jsonb_build_object('status_message', s.status_message) END,
           r.span_id
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
           "session.id" text, "gen_ai.conversation.id" text, "user.id" text, "flow.id" text, "flow.version" text,
           "flow.role" text, "flow.node.id" text, "flow.node.type" text, "flow.step.number" text,
           "flow.connection.type" text, "flow.next_node.id" text,
           "openinference.span.kind" text, "gen_ai.operation.name" text, "gen_ai.agent.name" text, metadata text)
     CROSS JOIN LATERAL (SELECT CASE WHEN x.metadata IS NOT NULL AND x."flow.role" IS NULL
                                     THEN tt_json(x.metadata) END AS meta) AS m
      LEFT JOIN LATERAL (SELECT e.value -> 'attributes' AS a
                           FROM jsonb_array_elements(s.events) WITH ORDINALITY AS e(value, n)
                          WHERE s.events <> '[]'::jsonb AND e.value ->> 'name' = 'exception'
                          ORDER BY e.n DESC LIMIT 1) AS ex ON true
      LEFT JOIN execution_log_rows r ON r.trace_id = s.trace_id AND r.span_id = s.parent_span_id
     WHERE k.role = 2
       AND NOT coalesce(jsonb_typeof(m.meta) = 'object' AND m.meta ->> 'langgraph_node' <> s.name, false)
     ORDER BY s.trace_id, s.span_id
    ON CONFLICT (trace_id, span_id) DO NOTHING
    RETURNING trace_id, run_span_id, status
    )
    UPDATE execution_log_rows e SET step_count = e.step_count + c.n, failed_step_count = e.failed_step_count + c.f
      FROM (SELECT trace_id, run_span_id, count(*)::integer AS n, count(*) FILTER (WHERE status = 'failed')::integer AS f
              FROM inserted WHERE run_span_id IS NOT NULL GROUP BY trace_id, run_span_id) AS c
     WHERE e.trace_id = c.trace_id AND e.span_id = c.run_span_id;

    -- Steps whose run was not known (in any trace of this batch: the missing span may just
    -- have come): walk up from the parent, through stored spans, to the nearest run.
    WITH RECURSIVE
    orphans AS MATERIALIZED (
        SELECT f.trace_id, f.span_id, f.parent_span_id
          FROM (SELECT DISTINCT t FROM unnest(t_ids) AS t) AS b
          JOIN flow_step_rows f ON f.trace_id = b.t AND f.run_span_id IS NULL
    ),
    up (trace_id, step_id, at, depth) AS (
        SELECT o.trace_id, o.span_id, o.parent_span_id, 0 FROM orphans o WHERE o.parent_span_id IS NOT NULL
        UNION ALL
        SELECT u.trace_id, u.step_id, p.parent_span_id, u.depth + 1
          FROM up u JOIN spans p ON p.trace_id = u.trace_id AND p.span_id = u.at
         WHERE u.depth < 64 AND p.parent_span_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM execution_log_rows x WHERE x.trace_id = u.trace_id AND x.span_id = u.at)
    ),
    owned AS (
        SELECT DISTINCT ON (u.trace_id, u.step_id) u.trace_id, u.step_id, u.at AS run_id
          FROM up u JOIN execution_log_rows x ON x.trace_id = u.trace_id AND x.span_id = u.at
         ORDER BY u.trace_id, u.step_id, u.depth
    ),
    adopted AS (
        UPDATE flow_step_rows f SET run_span_id = o.run_id
          FROM owned o
         WHERE f.trace_id = o.trace_id AND f.span_id = o.step_id AND f.run_span_id IS NULL
        RETURNING f.trace_id, f.run_span_id, f.status
    )
    UPDATE execution_log_rows e SET step_count = e.step_count + c.n, failed_step_count = e.failed_step_count + c.f
      FROM (SELECT trace_id, run_span_id, count(*)::integer AS n, count(*) FILTER (WHERE status = 'failed')::integer AS f
              FROM adopted GROUP BY trace_id, run_span_id) AS c
     WHERE e.trace_id = c.trace_id AND e.span_id = c.run_span_id;

    -- Calls: final spans and pending markers in one statement, in key order (two writers
    -- then take the row locks in the same order: no deadlock). A final span replaces a
    -- pending row; nothing replaces a final one.
    INSERT INTO communication_rows AS c (trace_id, span_id, trace_key, execution_id, attempt_number,
        source_service, destination_service, workflow_id, action, user_id, requested_at, responded_at,
        duration_ms, http_status_code, overall_status, error_code, error_detail, external_execution_id)
    SELECT DISTINCT ON (trace_id, span_id) trace_id, span_id, trace_key, execution_id, attempt_number,
           source_service, destination_service, workflow_id, action, user_id, requested_at, responded_at,
           duration_ms, http_status_code, overall_status, error_code, error_detail, external_execution_id
      FROM (
        SELECT s.trace_id, s.span_id, coalesce(x."flow.call.key", encode(s.trace_id, 'hex')) AS trace_key,
               encode(s.trace_id, 'hex') AS execution_id,
               coalesce(tt_int(x."flow.call.attempt"), tt_int(x."http.request.resend_count") + 1, 1)::integer
                   AS attempt_number,
               s.service_name AS source_service,
               coalesce(x."server.address", x."service.peer.name", x."peer.service", x."net.peer.name",
                        tt_url_host(coalesce(x."url.full", x."http.url"))) AS destination_service,
               x."flow.id" AS workflow_id, s.name AS action, x."user.id" AS user_id,
               s.start_time AS requested_at, s.end_time AS responded_at,
               (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6 AS duration_ms,
               h.code AS http_status_code,
               CASE WHEN h.failed THEN 'failed' ELSE 'success' END AS overall_status,
               CASE WHEN h.failed THEN coalesce(x."error.type", CASE WHEN h.code >= 400 THEN h.code::text END,
                                                ex.a ->> 'exception.type', 'error') END AS error_code,
               CASE WHEN h.failed THEN coalesce(nullif(s.status_message, ''), ex.a ->> 'exception.message') END
                   AS error_detail,
               x."flow.call.external_id" AS external_execution_id
          FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
          JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
         CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
               "flow.call.key" text, "flow.call.attempt" text, "http.request.resend_count" text,
               "server.address" text, "service.peer.name" text, "peer.service" text, "net.peer.name" text,
               "url.full" text, "http.url" text, "flow.id" text, "user.id" text,
               "http.response.status_code" text, "http.status_code" text,
               "error.type" text, "flow.call.external_id" text)
         CROSS JOIN LATERAL (SELECT code, s.status_code = 2 OR coalesce(code >= 400, false) AS failed FROM (SELECT
                   coalesce(tt_int(x."http.response.status_code"), tt_int(x."http.status_code"))::integer AS code) AS c0) AS h
          LEFT JOIN LATERAL (SELECT e.value -> 'attributes' AS a
                               FROM jsonb_array_elements(s.events) WITH ORDINALITY AS e(value, n)
                              WHERE h.failed AND s.events <> '[]'::jsonb AND e.value ->> 'name' = 'exception'
                              ORDER BY e.n DESC LIMIT 1) AS ex ON true
         WHERE k.role = 3
        UNION ALL
        -- A pending marker: a pending row for its parent, the call span.
        SELECT s.trace_id, s.parent_span_id, coalesce(x."flow.call.key", encode(s.trace_id, 'hex')),
               encode(s.trace_id, 'hex'), coalesce(tt_int(x."flow.call.attempt"), 1)::integer, s.service_name,
               NULL, x."flow.id", regexp_replace(s.name, ' pending$', ''), x."user.id", s.start_time, NULL, NULL,
               NULL, 'pending', NULL, NULL, NULL
          FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
          JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
         CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
               "flow.call.key" text, "flow.call.attempt" text, "flow.id" text, "user.id" text)
         WHERE k.role = 4 AND octet_length(s.parent_span_id) = 8
      ) AS calls
     ORDER BY trace_id, span_id, overall_status = 'pending', requested_at
    ON CONFLICT (trace_id, span_id) DO UPDATE SET
        trace_key = excluded.trace_key, execution_id = excluded.execution_id,
        attempt_number = excluded.attempt_number, source_service = excluded.source_service,
        destination_service = excluded.destination_service, workflow_id = excluded.workflow_id,
        action = excluded.action, user_id = excluded.user_id, requested_at = excluded.requested_at,
        responded_at = excluded.responded_at, duration_ms = excluded.duration_ms,
        http_status_code = excluded.http_status_code, overall_status = excluded.overall_status,
        error_code = excluded.error_code, error_detail = excluded.error_detail,
        external_execution_id = excluded.external_execution_id
      WHERE c.overall_status = 'pending' AND excluded.overall_status <> 'pending';

    -- Actions, and one provenance edge per link.
    INSERT INTO action_rows (trace_id, span_id, parent_span_id, flow_token, concept, action_name,
        occurred_at, completed_at, status, error_message, session_id, user_id)
    SELECT s.trace_id, s.span_id, s.parent_span_id, encode(s.trace_id, 'hex'), x."flow.action.concept",
           coalesce(x."flow.action.name", s.name), s.start_time, s.end_time,
           CASE WHEN s.status_code = 2 THEN 'failed' ELSE 'completed' END,
           CASE WHEN s.status_code = 2 THEN coalesce(nullif(s.status_message, ''), 'failed') END,
           x."session.id", x."user.id"
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x(
           "flow.action.concept" text, "flow.action.name" text, "session.id" text, "user.id" text)
     WHERE k.role = 5
     ORDER BY s.trace_id, s.span_id
    ON CONFLICT (trace_id, span_id) DO NOTHING;

    INSERT INTO provenance_edges (trace_id, span_id, cause_trace_id, cause_span_id, synchronization)
    SELECT s.trace_id, s.span_id, decode(l.value ->> 'trace_id', 'hex'), decode(l.value ->> 'span_id', 'hex'),
           l.value -> 'attributes' ->> 'flow.synchronization'
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_array_elements(s.links) AS l(value)
     WHERE k.role = 5 AND length(l.value ->> 'trace_id') = 32 AND length(l.value ->> 'span_id') = 16
     ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING;

    -- Replay events.
    INSERT INTO event_rows (trace_id, span_id, person_id, session_id, event_type, occurred_at)
    SELECT s.trace_id, s.span_id, x."user.id", x."session.id", coalesce(x."flow.event.type", s.name), s.start_time
      FROM unnest(t_ids, s_ids, roles) AS k(trace_id, span_id, role)
      JOIN spans s ON s.trace_id = k.trace_id AND s.span_id = k.span_id
     CROSS JOIN LATERAL jsonb_to_record(s.attributes) AS x("user.id" text, "session.id" text, "flow.event.type" text)
     WHERE k.role = 6
     ORDER BY s.trace_id, s.span_id
    ON CONFLICT (trace_id, span_id) DO NOTHING;

END $$;

COMMENT ON FUNCTION tt_project(bytea) IS
    'Projects a batch of stored spans (keys: 25 bytes a span: trace id, span id, role) into the role tables.';
