-- A pending reload can repair several gaps: a second gap's request for a table that already has a
-- pending one is merged into it (one export serves both). `gap_id` held one of them, so the other
-- gap was never resolved (a lost volume's files_lost gap merged with a slot_moved gap of the same
-- start). `more_gap_ids` keeps the others; a gap is resolved when no pending or running reload
-- names it in either column (src/registry/gap-resolve.ts).
ALTER TABLE cdc_registry.reloads ADD COLUMN more_gap_ids bigint[] NOT NULL DEFAULT '{}';
CREATE INDEX reloads_more_gaps_idx ON cdc_registry.reloads USING gin (more_gap_ids) WHERE state IN ('pending', 'running');

-- A root's reload expanded into its leaves hands every gap it repairs to each leaf (sql/007).
CREATE OR REPLACE FUNCTION cdc_registry.expand_root_reload(op bigint, pub text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  l record;
  n integer := 0;
BEGIN
  SELECT * INTO r FROM cdc_registry.reloads x WHERE x.id = op AND x.state = 'running' FOR UPDATE;
  IF NOT FOUND THEN RETURN 0; END IF;
  FOR l IN SELECT c.oid, ln.nspname::text AS s, c.relname::text AS t
           FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace
           CROSS JOIN LATERAL pg_partition_tree(rc.oid) pt
           JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace ln ON ln.oid = c.relnamespace
           WHERE rn.nspname = r.schema_name AND rc.relname = r.table_name AND rc.relkind = 'p' AND pt.isleaf
             AND EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                         WHERE p.pubname = pub AND pr.prrelid = c.oid)
           ORDER BY 2, 3 LOOP
    INSERT INTO cdc_registry.reloads AS x (slot_name, schema_name, table_name, relid, reason, requested_lsn, request_ids, gap_id, more_gap_ids)
    VALUES (r.slot_name, l.s, l.t, l.oid, r.reason, r.requested_lsn, r.request_ids, r.gap_id, r.more_gap_ids)
    ON CONFLICT (slot_name, schema_name, table_name) WHERE state = 'pending' DO UPDATE
      SET request_ids = ARRAY(SELECT DISTINCT unnest(x.request_ids || EXCLUDED.request_ids)),
          gap_id = COALESCE(EXCLUDED.gap_id, x.gap_id),
          more_gap_ids = ARRAY(SELECT DISTINCT g FROM unnest(x.more_gap_ids || EXCLUDED.more_gap_ids || x.gap_id || EXCLUDED.gap_id) AS g
                               WHERE g IS NOT NULL AND g IS DISTINCT FROM COALESCE(EXCLUDED.gap_id, x.gap_id)),
          requested_lsn = GREATEST(x.requested_lsn, EXCLUDED.requested_lsn),
          updated_at = now();
    INSERT INTO cdc_registry.tables AS t (slot_name, schema_name, table_name, relid, mode)
    VALUES (r.slot_name, l.s, l.t, l.oid, 'pending_reload')
    ON CONFLICT (slot_name, schema_name, table_name) DO UPDATE SET mode = 'pending_reload', updated_at = now()
      WHERE t.mode = 'streaming';
    n := n + 1;
  END LOOP;
  UPDATE cdc_registry.reloads x SET state = 'expanded', chunks = n, error = NULL, waiting_on = NULL, finished_at = now(), updated_at = now()
   WHERE x.id = op;
  UPDATE cdc_registry.tables t SET mode = 'streaming', updated_at = now()
   WHERE t.slot_name = r.slot_name AND t.schema_name = r.schema_name AND t.table_name = r.table_name;
  PERFORM pg_notify('pg_egress_reloads', r.slot_name);
  RETURN n;
END
$fn$;
