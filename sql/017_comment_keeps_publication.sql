-- A COMMENT does not reconcile the publication. The DDL trigger compared the publication with
-- tables.include/exclude after every command on a table, a COMMENT included: ~13 ms for one table
-- and ~30 ms for 500 in a session's first call (plpgsql compiled, selected_tables read), and every
-- reload marker is a COMMENT (`pg-egress reload` waits on it). A comment changes no table's name,
-- primary key or replica identity, so it cannot change what is selected; the daemon's own check
-- (every publication_check) stays as it is. Otherwise the function is 007's (the line marked [017]).
CREATE OR REPLACE FUNCTION cdc_registry.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  cmd record;
  rel oid;
  nsp text;
  tab text;
  kind "char";
  ispart boolean;
  s record;
  a record;
  cur text;
  touched boolean := false;
  created oid[] := '{}';
BEGIN
  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    CONTINUE WHEN cmd.classid <> 'pg_class'::regclass OR cmd.schema_name IS NULL
      OR cmd.schema_name IN ('cdc_registry', 'pg_catalog', 'information_schema')
      OR cmd.schema_name LIKE 'pg\_toast%' OR cmd.schema_name LIKE 'pg\_temp%';
    -- [017] A COMMENT changes no table's name, key or identity: it cannot change what is published.
    CONTINUE WHEN cmd.command_tag = 'COMMENT';
    touched := true;
    IF cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN created := created || cmd.objid; END IF;
  END LOOP;
  IF touched THEN
    FOR s IN SELECT publication FROM cdc_registry.settings LOOP
      BEGIN
        FOR a IN SELECT * FROM cdc_registry.reconcile_publication(s.publication) r WHERE r.action = 'added' LOOP
          SELECT c.oid INTO rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = a.schema_name AND c.relname = a.table_name;
          IF NOT rel = ANY (created) THEN
            PERFORM cdc_registry.emit_reload('joined', a.schema_name, a.table_name, rel);
          END IF;
        END LOOP;
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pg-egress could not update publication %: %', s.publication, SQLERRM;
      END;
    END LOOP;
  END IF;

  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    BEGIN
      CONTINUE WHEN cmd.schema_name IS NULL
        OR cmd.schema_name IN ('cdc_registry', 'pg_catalog', 'information_schema')
        OR cmd.schema_name LIKE 'pg\_toast%' OR cmd.schema_name LIKE 'pg\_temp%';
      CONTINUE WHEN cmd.classid <> 'pg_class'::regclass;
      -- An index command concerns its table.
      SELECT CASE WHEN c.relkind IN ('i', 'I') THEN i.indrelid ELSE c.oid END
        INTO rel
        FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
       WHERE c.oid = cmd.objid;
      CONTINUE WHEN rel IS NULL;
      SELECT n.nspname, c.relname, c.relkind, c.relispartition INTO nsp, tab, kind, ispart
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
      -- [007 partitions] Leaves are tables of their own: their DDL is recorded too.
      CONTINUE WHEN kind NOT IN ('r', 'p');
      IF cmd.command_tag = 'COMMENT' AND cmd.objsubid = 0 THEN
        cur := obj_description(rel, 'pg_class');
        IF cur = 'pg-egress:reload' THEN
          -- A marker: a request at this transaction's position, not a DDL change to export.
          PERFORM cdc_registry.emit_reload('marker', nsp, tab, rel);
          CONTINUE;
        END IF;
        INSERT INTO cdc_registry.comments (relid, comment) VALUES (rel, cur)
          ON CONFLICT (relid) DO UPDATE SET comment = EXCLUDED.comment;
        -- Putting the comment back after a reload is not a change of the table's definition.
        CONTINUE WHEN current_setting('pg_egress.restoring', true) = 'on';
      END IF;
      PERFORM cdc_registry.record_ddl(cmd.command_tag, cmd.object_type, cmd.object_identity, nsp, tab, rel,
                                      cdc_registry.table_definition(rel), false);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pg-egress DDL capture failed for %: %', cmd.object_identity, SQLERRM;
    END;
  END LOOP;

  -- [007 partitions] A root's membership changed by this command, at its WAL position.
  BEGIN
    PERFORM cdc_registry.capture_partitions_ddl(tg_tag);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg-egress partition capture failed: %', SQLERRM;
  END;
END
$fn$;
