-- Safe by default (issue "Safe by default"): write intents for the start-up sweep, gaps, which tables
-- were published, what to do with tables that have no replica identity, and one function that keeps
-- a publication equal to what its settings select, used by the daemon and by the DDL event trigger.

-- What to do with a selected table that has no primary key and no replica identity:
-- skip (not published: PostgreSQL would reject the application's UPDATE/DELETE on it) or
-- full (pg-egress sets REPLICA IDENTITY FULL on it, then publishes it).
ALTER TABLE cdc_registry.settings
  ADD COLUMN no_identity text NOT NULL DEFAULT 'skip' CHECK (no_identity IN ('skip', 'full'));

-- A table the daemon has seen in the publication. If such a table is later found missing from the
-- publication while it still matches, the changes in between were not published: a gap.
ALTER TABLE cdc_registry.tables ADD COLUMN published boolean NOT NULL DEFAULT false;

-- Files a flush is about to place in output.dir, recorded before the first of them is renamed into
-- place and deleted in the transaction that registers them. The start-up sweep removes only these
-- (and _tmp): never a file the registry knows nothing about.
CREATE TABLE cdc_registry.write_intents (
  slot_name       text NOT NULL,
  batch_id        text NOT NULL,
  paths           text[] NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot_name, batch_id)
);

-- Changes that were committed but are in no file: a slot dropped or invalidated, a table missing
-- from the publication for a while, publish options narrowed. Resolved by a fresh export (reload)
-- or by an operator's explicit acceptance.
CREATE TABLE cdc_registry.gaps (
  id              bigserial PRIMARY KEY,
  slot_name       text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('slot_lost', 'unpublished', 'publish_options')),
  schema_name     text,                  -- NULL: every table
  table_name      text,
  lsn_from        pg_lsn,                -- last LSN known to be captured
  lsn_to          pg_lsn,                -- LSN from which capture is whole again (NULL: not yet)
  detail          text NOT NULL,
  detected_at     timestamptz NOT NULL DEFAULT now(),
  resolved_at     timestamptz,
  resolution      text
);
CREATE INDEX gaps_open_idx ON cdc_registry.gaps (slot_name) WHERE resolved_at IS NULL;

-- Can PostgreSQL publish UPDATE/DELETE of this table? (a primary key, a replica identity index, or FULL)
-- https://www.postgresql.org/docs/15/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY
CREATE FUNCTION cdc_registry.has_identity(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT CASE c.relreplident
           WHEN 'f' THEN true
           WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
           WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
           ELSE false END
  FROM pg_class c WHERE c.oid = rel
$fn$;

-- Permanent user tables (ordinary and partitioned roots; partitions are published through their
-- root) that a publication's settings select, with whether they have a replica identity.
CREATE FUNCTION cdc_registry.selected_tables(pub text)
RETURNS TABLE (relid oid, schema_name text, table_name text, identity boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT c.oid, n.nspname::text, c.relname::text, cdc_registry.has_identity(c.oid)
  FROM cdc_registry.settings s
  JOIN pg_namespace n ON true
  JOIN pg_class c ON c.relnamespace = n.oid
  WHERE s.publication = pub
    AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cdc_registry')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
    AND cdc_registry.matches(s.include, s.exclude, n.nspname, c.relname)
$fn$;

-- Makes the publication publish exactly the selected tables that have a replica identity (under
-- no_identity = full, keyless ones get REPLICA IDENTITY FULL first), with every operation and
-- publish_via_partition_root. Returns what it changed: options, identity_full, added, removed.
-- SECURITY DEFINER: the DDL event trigger runs it for the application's role, and a daemon whose
-- role does not own the application's tables may still keep the publication right.
-- https://www.postgresql.org/docs/15/sql-alterpublication.html
CREATE FUNCTION cdc_registry.reconcile_publication(pub text)
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
             AND NOT (p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate AND p.pubviaroot)) THEN
    EXECUTE format('ALTER PUBLICATION %I SET (publish = %L, publish_via_partition_root = true)',
                   pub, 'insert, update, delete, truncate');
    action := 'options'; schema_name := NULL; table_name := NULL;
    RETURN NEXT;
  END IF;

  IF s.no_identity = 'full' THEN
    FOR r IN SELECT * FROM cdc_registry.selected_tables(pub) t WHERE NOT t.identity LOOP
      EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', r.schema_name, r.table_name);
      action := 'identity_full'; schema_name := r.schema_name; table_name := r.table_name;
      RETURN NEXT;
    END LOOP;
  END IF;

  FOR r IN SELECT t.schema_name, t.table_name FROM cdc_registry.selected_tables(pub) t
           WHERE t.identity AND NOT EXISTS (
             SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
             WHERE p.pubname = pub AND pr.prrelid = t.relid)
           ORDER BY 1, 2 LOOP
    EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', pub, r.schema_name, r.table_name);
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
    EXECUTE format('ALTER PUBLICATION %I DROP TABLE %I.%I', pub, r.schema_name, r.table_name);
    action := 'removed'; schema_name := r.schema_name; table_name := r.table_name;
    RETURN NEXT;
  END LOOP;

  PERFORM set_config('pg_egress.reconciling', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.reconcile_publication(text) FROM PUBLIC;

-- The DDL trigger now reconciles the publication after any command on a table, so a table that
-- moves into scope (CREATE TABLE, DETACH PARTITION, SET SCHEMA, SET LOGGED, a new primary key or
-- replica identity) joins it in the same transaction, and one that leaves scope or loses its
-- identity leaves it. A table without a replica identity is never added (the application's
-- UPDATE/DELETE on it would fail).
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
  touched boolean := false;
BEGIN
  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    CONTINUE WHEN cmd.classid <> 'pg_class'::regclass OR cmd.schema_name IS NULL
      OR cmd.schema_name IN ('cdc_registry', 'pg_catalog', 'information_schema')
      OR cmd.schema_name LIKE 'pg\_toast%' OR cmd.schema_name LIKE 'pg\_temp%';
    touched := true;
  END LOOP;
  IF touched THEN
    FOR s IN SELECT publication FROM cdc_registry.settings LOOP
      BEGIN
        PERFORM cdc_registry.reconcile_publication(s.publication);
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
      -- Partitions are published through their root (publish_via_partition_root).
      CONTINUE WHEN kind NOT IN ('r', 'p') OR ispart;
      PERFORM cdc_registry.record_ddl(cmd.command_tag, cmd.object_type, cmd.object_identity, nsp, tab, rel,
                                      cdc_registry.table_definition(rel), false);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pg-egress DDL capture failed for %: %', cmd.object_identity, SQLERRM;
    END;
  END LOOP;
END
$fn$;
