-- Decoding strings that held NUL (exporters/postgres/nul_escape.py).
--
-- PostgreSQL text cannot hold U+0000 and jsonb refuses \u0000, so the exporter stores
-- U+0000 as U+001A followed by '0', and U+001A itself as U+001A U+001A, in text columns
-- and in every jsonb key and string value; other strings are stored unchanged.
--
-- tt_unescape(value) gives the original string's exact UTF-8 bytes (NUL included, so
-- bytea); tt_unescape(value, nul_as) gives text with each NUL replaced by nul_as.

CREATE FUNCTION tt_unescape(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(value, chr(26)) = 0 THEN convert_to(value, 'UTF8') ELSE (
        SELECT string_agg(CASE t.m[1]
                              WHEN chr(26) || '0' THEN '\x00'::bytea
                              WHEN chr(26) || chr(26) THEN '\x1a'::bytea
                              ELSE convert_to(t.m[1], 'UTF8') END, ''::bytea ORDER BY t.n)
          FROM regexp_matches(value, '\x1a[0\x1a]|[^\x1a]+|\x1a', 'g') WITH ORDINALITY AS t(m, n))
    END
$$;

CREATE FUNCTION tt_unescape(value text, nul_as text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(value, chr(26)) = 0 THEN value ELSE (
        SELECT string_agg(CASE t.m[1]
                              WHEN chr(26) || '0' THEN nul_as
                              WHEN chr(26) || chr(26) THEN chr(26)
                              ELSE t.m[1] END, '' ORDER BY t.n)
          FROM regexp_matches(value, '\x1a[0\x1a]|[^\x1a]+|\x1a', 'g') WITH ORDINALITY AS t(m, n))
    END
$$;
