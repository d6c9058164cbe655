-- Many tables' definitions in one query. table_definition(rel) (sql/002) is a SQL function with
-- its own search_path: called once per table, as the daemon's start and every export's plan did
-- for each of their tables, the server set and reset that setting and ran the query's plan for
-- each one: 50-65 ms of server CPU for 500 tables here, on the export's critical path (its plan
-- runs under the first worker's locks). Set-based, the same JSON costs 20-25 ms. table_definition
-- becomes a call of this one, so that both give the same JSON (the event triggers' DDL messages
-- and schema.yml are read with the same decoder, src/source/setup.ts).
CREATE FUNCTION cdc_registry.table_definitions(rels oid[]) RETURNS TABLE (ord bigint, rel oid, def jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT r.ord, c.oid, jsonb_build_object(
    'relid', c.oid,
    'schema', n.nspname,
    'table', c.relname,
    'replica_identity', c.relreplident::text,
    'primary_key', COALESCE((
        SELECT jsonb_agg(a.attname ORDER BY k.ord)
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary), '[]'::jsonb),
    'columns', COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
                 'name', a.attname,
                 'type', format_type(a.atttypid, a.atttypmod),
                 'type_oid', a.atttypid,
                 'nullable', NOT a.attnotnull,
                 'generated', a.attgenerated <> '') ORDER BY a.attnum)
        FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb))
  FROM unnest(rels) WITH ORDINALITY AS r(oid, ord)
  JOIN pg_class c ON c.oid = r.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  ORDER BY r.ord
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.table_definitions(oid[]) FROM PUBLIC;

-- Its owner and grants stay (CREATE OR REPLACE); the event triggers that call it run as the owner.
CREATE OR REPLACE FUNCTION cdc_registry.table_definition(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT d.def FROM cdc_registry.table_definitions(ARRAY[rel]) d
$fn$;

-- The daemon's role that `init --url` granted every function of the registry to (install.ts)
-- needs the new one too: a registry migrated by a later `init` without --url would leave it out.
DO $do$
DECLARE
  r text;
BEGIN
  FOR r IN SELECT DISTINCT s.reader_role FROM cdc_registry.settings s
           WHERE s.reader_role IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = s.reader_role) LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION cdc_registry.table_definitions(oid[]) TO %I', r);
  END LOOP;
END
$do$;
