-- Read-only access for tools (Grafana, notebooks, psql): the group role tracetables_reader.
--
-- tt_grant_reader_access() grants the role USAGE on this schema, SELECT on every view in
-- it and on the two base tables the README documents for querying (spans and
-- provenance_edges), and EXECUTE on the tt_ functions except the writers (tt_project,
-- tt_expire) and itself. Nothing is granted on the narrow projection tables, the
-- migrations table or tracing_config: a view reads its tables with its owner's rights, so
-- a reader needs only the view. The query functions stay SECURITY INVOKER, so that
-- PostgreSQL keeps inlining them into the caller's query (a SECURITY DEFINER function is
-- never inlined); they read views, spans and provenance_edges only, all readable by the role.
--
-- A later migration that adds a view (or a query function) ends with
--     SELECT tt_grant_reader_access();
-- tests/test_reader_access.py reads every view as a reader and fails otherwise.
--
-- The role is created when absent and when the migrating user may create roles. On a
-- database whose user may not (an external DSN), creating it is skipped with a NOTICE;
-- an administrator can create it (CREATE ROLE tracetables_reader NOLOGIN) and then run
-- SELECT tt_grant_reader_access() as the schema's owner.

CREATE FUNCTION tt_grant_reader_access() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    obj record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tracetables_reader') THEN
        RAISE NOTICE 'role tracetables_reader does not exist: no read access granted';
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tracetables_reader', current_schema());
    FOR obj IN
        SELECT c.oid::regclass AS rel FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace
           AND (c.relkind IN ('v', 'm') OR (c.relkind IN ('r', 'p') AND c.relname IN ('spans', 'provenance_edges')))
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO tracetables_reader', obj.rel);
    END LOOP;
    FOR obj IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind = 'f'
           AND p.proname LIKE 'tt\_%' AND p.proname NOT IN ('tt_project', 'tt_expire', 'tt_grant_reader_access')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO tracetables_reader', obj.fn);
    END LOOP;
END $$;

REVOKE EXECUTE ON FUNCTION tt_grant_reader_access() FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tracetables_reader') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE tracetables_reader NOLOGIN;
        ELSE
            RAISE NOTICE 'role tracetables_reader not created: % may not create roles '
                         '(tracetables db grant-reader needs it; see the README, SQL access for tools)', current_user;
        END IF;
    END IF;
    -- Before PostgreSQL 15 every role may create objects in schema public; a reader must not.
    IF current_schema() = 'public' AND has_schema_privilege('public', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        IF has_schema_privilege('public', 'public', 'CREATE') THEN
            RAISE NOTICE 'PUBLIC may still create objects in schema public: only its owner can revoke that';
        END IF;
    END IF;
END $$;

SELECT tt_grant_reader_access();
