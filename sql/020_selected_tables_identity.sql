-- selected_tables(pub) with has_identity(rel) (sql/003) written into it. has_identity is a SQL
-- function with its own search_path, so it is not inlined: called once per table, the server set
-- and reset that setting and ran its plan for each one, half of selected_tables' time (500
-- tables: ~6 ms, ~3 ms without the calls). selected_tables runs twice in every reconcile_publication
-- (after each DDL on a table, from the event trigger, and at every publication_check), and at the
-- daemon's start. The same rows as 007's (the column marked [020] is has_identity's body), which a
-- test compares with has_identity for every kind of replica identity.
-- https://wiki.postgresql.org/wiki/Inlining_of_SQL_functions
CREATE OR REPLACE FUNCTION cdc_registry.selected_tables(pub text)
RETURNS TABLE (relid oid, schema_name text, table_name text, identity boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  WITH s AS (SELECT * FROM cdc_registry.settings st WHERE st.publication = pub),
  via_root AS (
    SELECT DISTINCT t.relid
    FROM s, pg_class p
    JOIN pg_namespace pn ON pn.oid = p.relnamespace
    CROSS JOIN LATERAL pg_partition_tree(p.oid) t
    WHERE p.relkind = 'p' AND t.isleaf
      AND cdc_registry.matches(s.include, s.exclude, pn.nspname, p.relname))
  SELECT c.oid, n.nspname::text, c.relname::text,
         -- [020] cdc_registry.has_identity(c.oid)
         CASE c.relreplident
           WHEN 'f' THEN true
           WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
           WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
           ELSE false END
  FROM s
  JOIN pg_namespace n ON true
  JOIN pg_class c ON c.relnamespace = n.oid
  WHERE c.relkind = 'r' AND c.relpersistence = 'p'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cdc_registry')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
    AND (cdc_registry.matches(s.include, s.exclude, n.nspname, c.relname)
         OR (c.relispartition
             AND c.oid IN (SELECT v.relid FROM via_root v)
             AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(s.exclude) x
                             WHERE n.nspname ~ (x->>'schema') AND c.relname ~ (x->>'table'))))
$fn$;
