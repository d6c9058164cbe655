-- reconcile_publication against itself: the daemon's check (every publication_check) and the DDL
-- event trigger (inside the application's DDL transaction) both run it, and each reads the
-- publication before it changes it. When both find the same table to drop or add, the second
-- waits on the table's lock (ALTER PUBLICATION takes SHARE UPDATE EXCLUSIVE on it), then finds the
-- change made: "relation ... is not part of the publication" (42704) or "... is already member of
-- publication" (42710). The daemon exited; the trigger (which turns any error into a WARNING) lost
-- its whole repair, left to the daemon's next check. Seen in CI: ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY commits the
-- partition as detach-pending in its first transaction, from when on it is in no partition tree
-- of a new snapshot (so no longer selected), and its trigger runs in the second transaction, while
-- the daemon's check had dropped it meanwhile. A table dropped meanwhile gives 42P01.
-- So each change is made in its own block: one that the other session already made is skipped and
-- not reported (that session reports it). Otherwise the function is 007's.
-- https://www.postgresql.org/docs/15/plpgsql-control-structures.html#PLPGSQL-ERROR-TRAPPING
-- https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/commands/publicationcmds.c
CREATE OR REPLACE FUNCTION cdc_registry.reconcile_publication(pub text)
RETURNS TABLE (action text, schema_name text, table_name text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  s record;
  r record;
BEGIN
  -- ALTER TABLE ... REPLICA IDENTITY FULL below fires the event trigger again: do not recurse.
  IF current_setting('pg_egress.reconciling', true) = 'on' THEN RETURN; END IF;
  SELECT * INTO s FROM cdc_registry.settings st WHERE st.publication = pub;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = pub) THEN RETURN; END IF;
  PERFORM set_config('pg_egress.reconciling', 'on', true);

  IF EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = pub
             AND NOT (p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate)) THEN
    EXECUTE format('ALTER PUBLICATION %I SET (publish = %L)', pub, 'insert, update, delete, truncate');
    action := 'options'; schema_name := NULL; table_name := NULL;
    RETURN NEXT;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = pub AND p.pubviaroot) THEN
    EXECUTE format('ALTER PUBLICATION %I SET (publish_via_partition_root = false)', pub);
    action := 'via_root'; schema_name := NULL; table_name := NULL;
    RETURN NEXT;
  END IF;

  IF s.no_identity = 'full' THEN
    FOR r IN SELECT * FROM cdc_registry.selected_tables(pub) t WHERE NOT t.identity LOOP
      BEGIN
        EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', r.schema_name, r.table_name);
      EXCEPTION WHEN undefined_table THEN
        CONTINUE;
      END;
      action := 'identity_full'; schema_name := r.schema_name; table_name := r.table_name;
      RETURN NEXT;
    END LOOP;
  END IF;

  FOR r IN SELECT t.schema_name, t.table_name FROM cdc_registry.selected_tables(pub) t
           WHERE t.identity AND NOT EXISTS (
             SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
             WHERE p.pubname = pub AND pr.prrelid = t.relid)
           ORDER BY 1, 2 LOOP
    BEGIN
      EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', pub, r.schema_name, r.table_name);
    EXCEPTION WHEN duplicate_object OR undefined_table THEN
      CONTINUE;
    END;
    -- The daemon's role exports the table's rows (COPY needs SELECT).
    IF s.reader_role IS NOT NULL THEN
      EXECUTE format('GRANT SELECT ON %I.%I TO %I', r.schema_name, r.table_name, s.reader_role);
    END IF;
    action := 'added'; schema_name := r.schema_name; table_name := r.table_name;
    RETURN NEXT;
  END LOOP;

  FOR r IN SELECT n.nspname::text AS schema_name, c.relname::text AS table_name
           FROM pg_publication_rel pr
           JOIN pg_publication p ON p.oid = pr.prpubid
           JOIN pg_class c ON c.oid = pr.prrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE p.pubname = pub AND NOT EXISTS (
             SELECT 1 FROM cdc_registry.selected_tables(pub) t WHERE t.relid = pr.prrelid AND t.identity)
           ORDER BY 1, 2 LOOP
    BEGIN
      EXECUTE format('ALTER PUBLICATION %I DROP TABLE %I.%I', pub, r.schema_name, r.table_name);
    EXCEPTION WHEN undefined_object OR undefined_table THEN
      CONTINUE;
    END;
    action := 'removed'; schema_name := r.schema_name; table_name := r.table_name;
    RETURN NEXT;
  END LOOP;

  PERFORM set_config('pg_egress.reconciling', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.reconcile_publication(text) FROM PUBLIC;
