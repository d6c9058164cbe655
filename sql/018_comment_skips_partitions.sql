-- A COMMENT does not sync partition membership. The DDL trigger looked up, after every command on
-- a table, the roots above it and synced their leaves (sync_partitions), a COMMENT included: ~19 ms
-- of a session's first reload marker here (plpgsql compiled, every level above the table read) and
-- ~2 ms of each later one; every reload marker is a COMMENT (`pg-egress reload` waits on it), and
-- so is putting its comment back. A comment attaches, detaches, creates and drops nothing, so it
-- cannot change what a root holds; the daemon's own sync (at start and every publication_check)
-- stays as it is, as for the publication in 017. Otherwise the function is 007's (the line marked [018]).
CREATE OR REPLACE FUNCTION cdc_registry.capture_partitions_ddl(tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  s record;
  roots oid[] := '{}';
  rels oid[] := '{}';
  created oid[] := '{}';
BEGIN
  -- [018] A COMMENT changes no partition tree (see above).
  IF tag = 'COMMENT' THEN RETURN; END IF;
  SELECT array_agg(DISTINCT COALESCE(i.indrelid, cmd.objid)), array_agg(cmd.objid) FILTER (WHERE cmd.command_tag = 'CREATE TABLE')
    INTO rels, created
    FROM pg_event_trigger_ddl_commands() cmd LEFT JOIN pg_index i ON i.indexrelid = cmd.objid
   WHERE cmd.classid = 'pg_class'::regclass AND cmd.schema_name IS NOT NULL
     AND cmd.schema_name NOT IN ('cdc_registry', 'pg_catalog', 'information_schema')
     AND cmd.schema_name NOT LIKE 'pg\_toast%' AND cmd.schema_name NOT LIKE 'pg\_temp%';
  IF rels IS NULL THEN RETURN; END IF;
  PERFORM cdc_registry.propagate_partitioned_ddl(rels, tag);
  FOR s IN SELECT st.publication FROM cdc_registry.settings st LOOP
    -- Every level above each table, and the roots it was last seen in (a detached leaf's DDL).
    SELECT array_agg(DISTINCT x) INTO roots FROM (
      SELECT cdc_registry.selected_root(s.publication, a.relid) AS x
        FROM unnest(rels) r, pg_partition_ancestors(r) a
      UNION SELECT m.root FROM cdc_registry.partition_members m WHERE m.publication = s.publication AND m.leaf = ANY (rels) AND m.current
      UNION SELECT pr.root FROM cdc_registry.partition_roots pr WHERE pr.publication = s.publication AND pr.root = ANY (rels)) y
     WHERE x IS NOT NULL;
    IF roots IS NOT NULL THEN
      PERFORM cdc_registry.sync_partitions(s.publication, roots, tag, COALESCE(created, '{}'));
    END IF;
  END LOOP;
END
$fn$;
