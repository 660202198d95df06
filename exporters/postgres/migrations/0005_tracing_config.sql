-- Per-flow tracing settings, read by the collector's trace_level processor (which
-- refreshes them every few seconds: a change takes effect without a restart).
CREATE TABLE tracing_config (
    flow_id        text        PRIMARY KEY,
    enabled        boolean     NOT NULL DEFAULT true,
    level          text        NOT NULL DEFAULT 'standard' CHECK (level IN ('minimal', 'standard', 'verbose')),
    retention_days integer     CHECK (retention_days > 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tracing_config IS
    'Per flow (flow.id): enabled (false: its spans are dropped), level (minimal, standard, verbose), retention_days.';
