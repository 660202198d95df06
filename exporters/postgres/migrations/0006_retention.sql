-- Retention: tracing_config.retention_days enforced.
--
-- A trace expires when every run in it (execution_log_rows) belongs to a flow with a
-- retention_days and started longer ago than that. It is then deleted whole: its spans
-- and its rows in every projection table (provenance edges whose effect is in it; an
-- edge from another trace that names it as a cause stays, as a dangling cause). Traces
-- without a run are kept: nothing says which flow they belong to.
--
-- tt_expire(max_traces) deletes up to max_traces expired traces in the caller's
-- transaction and returns how many; the postgres exporter calls it on a timer
-- (exporters.postgres.retention) until it returns less than max_traces. It takes the
-- per-trace advisory locks the ingest takes (0003), in the same order, so a late span of
-- an expiring trace is written either before the delete (and deleted) or after it.

CREATE FUNCTION tt_expire(max_traces integer DEFAULT 200) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    doomed   bytea[];
    lock_key integer;
BEGIN
    SELECT array_agg(t.trace_id ORDER BY t.trace_id) INTO doomed FROM (
        SELECT DISTINCT e.trace_id
          FROM tracing_config c
          JOIN execution_log_rows e
            ON e.flow_id = c.flow_id AND e.started_at < now() - c.retention_days * interval '1 day'
         WHERE c.retention_days IS NOT NULL
           AND NOT EXISTS (
               SELECT 1
                 FROM execution_log_rows n
                 LEFT JOIN tracing_config nc ON nc.flow_id = n.flow_id
                WHERE n.trace_id = e.trace_id
                  AND (nc.retention_days IS NULL OR n.started_at IS NULL
                       OR n.started_at >= now() - nc.retention_days * interval '1 day'))
         LIMIT max_traces) AS t;
    IF doomed IS NULL THEN
        RETURN 0;
    END IF;
    FOR lock_key IN SELECT DISTINCT ('x' || encode(substr(t, 1, 4), 'hex'))::bit(32)::integer
                      FROM unnest(doomed) AS t ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1953759233, lock_key);
    END LOOP;
    -- Again under the locks: a run written meanwhile keeps its trace.
    SELECT array_agg(d) INTO doomed
      FROM unnest(doomed) AS d
     WHERE NOT EXISTS (
           SELECT 1
             FROM execution_log_rows n
             LEFT JOIN tracing_config nc ON nc.flow_id = n.flow_id
            WHERE n.trace_id = d
              AND (nc.retention_days IS NULL OR n.started_at IS NULL
                   OR n.started_at >= now() - nc.retention_days * interval '1 day'));
    IF doomed IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM spans WHERE trace_id = ANY (doomed);
    DELETE FROM flow_step_rows WHERE trace_id = ANY (doomed);
    DELETE FROM execution_log_rows WHERE trace_id = ANY (doomed);
    DELETE FROM communication_rows WHERE trace_id = ANY (doomed);
    DELETE FROM action_rows WHERE trace_id = ANY (doomed);
    DELETE FROM provenance_edges WHERE trace_id = ANY (doomed);
    DELETE FROM event_rows WHERE trace_id = ANY (doomed);
    RETURN cardinality(doomed);
END $$;

COMMENT ON FUNCTION tt_expire(integer) IS
    'Deletes up to max_traces traces past their flow''s tracing_config.retention_days; returns how many.';
