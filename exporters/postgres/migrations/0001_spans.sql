-- The lossless span store: every span, with enough to re-export it as OTLP.
-- Ids are bytea (hex helpers below); fixed64 times are stored two's-complement in
-- bigint (values past 2^63 read back exactly); start_time/end_time are the same
-- instants as timestamptz for people and indexes.

-- uint64 nanoseconds since the epoch (as stored) → timestamptz, NULL when unset.
CREATE FUNCTION tt_unix_nano_to_timestamptz(ns bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    -- Whole days first, then microseconds: interval arithmetic goes through float8, and
    -- each factor stays small enough to be exact for every representable instant.
    RETURN CASE WHEN ns > 0 THEN timestamptz '1970-01-01 00:00:00+00'
        + (ns / 86400000000000) * interval '24 hours'
        + ((ns % 86400000000000) / 1000) * interval '1 microsecond' END;
-- The exporter fills start_time/end_time itself (as the same function would): a
-- generated column cost PostgreSQL a fifth more CPU per row in bench/ingest.

CREATE TABLE spans (
    trace_id                          bytea       NOT NULL CHECK (octet_length(trace_id) = 16),
    span_id                           bytea       NOT NULL CHECK (octet_length(span_id) = 8),
    parent_span_id                    bytea,
    trace_state                       text        NOT NULL DEFAULT '',
    flags                             bigint      NOT NULL DEFAULT 0,
    name                              text        NOT NULL,
    kind                              integer     NOT NULL DEFAULT 0,
    start_time_unix_nano              bigint      NOT NULL,
    end_time_unix_nano                bigint      NOT NULL,
    start_time                        timestamptz,
    end_time                          timestamptz,
    status_code                       integer     NOT NULL DEFAULT 0,
    status_message                    text        NOT NULL DEFAULT '',
    attributes                        jsonb       NOT NULL DEFAULT '{}',
    dropped_attributes_count          bigint      NOT NULL DEFAULT 0,
    events                            jsonb       NOT NULL DEFAULT '[]',
    dropped_events_count              bigint      NOT NULL DEFAULT 0,
    links                             jsonb       NOT NULL DEFAULT '[]',
    dropped_links_count               bigint      NOT NULL DEFAULT 0,
    service_name                      text,
    resource_attributes               jsonb       NOT NULL DEFAULT '{}',
    resource_dropped_attributes_count bigint      NOT NULL DEFAULT 0,
    resource_schema_url               text        NOT NULL DEFAULT '',
    scope_name                        text        NOT NULL DEFAULT '',
    scope_version                     text        NOT NULL DEFAULT '',
    scope_attributes                  jsonb       NOT NULL DEFAULT '{}',
    scope_dropped_attributes_count    bigint      NOT NULL DEFAULT 0,
    scope_schema_url                  text        NOT NULL DEFAULT '',
    received_at                       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, span_id)
);

CREATE INDEX spans_start_time_idx ON spans (start_time);

COMMENT ON TABLE spans IS 'Every span received, lossless: re-exportable as OTLP. Keyed by (trace_id, span_id).';
COMMENT ON COLUMN spans.attributes IS 'Span attributes as a JSON object; non-JSON types wrapped as {"@bytes": b64} / {"@double": repr}.';
COMMENT ON COLUMN spans.start_time_unix_nano IS 'OTLP fixed64, stored two''s-complement: values >= 2^63 appear negative.';
COMMENT ON COLUMN spans.kind IS 'OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.';
COMMENT ON COLUMN spans.status_code IS 'OTLP StatusCode: 0 unset, 1 ok, 2 error.';

-- Hex text ⇄ id bytes, for people typing ids: WHERE trace_id = tt_id('5b8efff7…').
CREATE FUNCTION tt_id(hex text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN decode(hex, 'hex');

CREATE VIEW spans_readable AS
SELECT encode(trace_id, 'hex')        AS trace_id,
       encode(span_id, 'hex')         AS span_id,
       encode(parent_span_id, 'hex')  AS parent_span_id,
       service_name,
       name,
       CASE kind WHEN 1 THEN 'internal' WHEN 2 THEN 'server' WHEN 3 THEN 'client'
                 WHEN 4 THEN 'producer' WHEN 5 THEN 'consumer' ELSE 'unspecified' END AS kind,
       start_time,
       end_time,
       (end_time_unix_nano - start_time_unix_nano) / 1e6 AS duration_ms,
       CASE status_code WHEN 1 THEN 'ok' WHEN 2 THEN 'error' ELSE 'unset' END AS status,
       status_message,
       attributes,
       events,
       links,
       resource_attributes,
       scope_name,
       scope_version
FROM spans;

COMMENT ON VIEW spans_readable IS 'spans with hex ids, named kinds and statuses, and duration in ms.';
