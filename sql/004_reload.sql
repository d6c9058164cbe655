-- Consistent exports (SPEC §6, §8): reload operations, batch names shared by flushes and reloads,
-- reload markers with the table's previous comment, and tables that join the publication with data.

-- One batch name space per slot: flushes and reloads of a window take the next name atomically.
CREATE TABLE cdc_registry.window_seq (
  slot_name       text NOT NULL,
  window_name     text NOT NULL,
  next_seq        integer NOT NULL,
  PRIMARY KEY (slot_name, window_name)
);

-- The n-th batch of a window (0 = the window's own name); existing batches count on upgrade.
CREATE FUNCTION cdc_registry.next_batch_seq(slot text, win text) RETURNS integer
LANGUAGE sql AS $fn$
  INSERT INTO cdc_registry.window_seq AS w (slot_name, window_name, next_seq)
  VALUES (slot, win, (SELECT count(*) FROM cdc_registry.batches b
                      WHERE b.slot_name = slot AND (b.batch_id = win OR b.batch_id LIKE win || '-%')) + 1)
  ON CONFLICT (slot_name, window_name) DO UPDATE SET next_seq = w.next_seq + 1
  RETURNING next_seq - 1
$fn$;

ALTER TABLE cdc_registry.reloads
  ADD COLUMN reason          text NOT NULL DEFAULT 'marker' CHECK (reason IN ('marker', 'initial', 'joined', 'gap', 'operator')),
  ADD COLUMN relid           oid,
  ADD COLUMN request_ids     text[] NOT NULL DEFAULT '{}',
  ADD COLUMN previous_comment text,
  ADD COLUMN restore_comment boolean NOT NULL DEFAULT false,
  ADD COLUMN gap_id          bigint,
  ADD COLUMN batch_id        text,
  ADD COLUMN chunks          integer,
  ADD COLUMN chunks_done     integer NOT NULL DEFAULT 0,
  ADD COLUMN workers         integer,
  ADD COLUMN raw_bytes       bigint NOT NULL DEFAULT 0,
  ADD COLUMN table_bytes     bigint,
  ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
  ADD COLUMN waiting_on      text,
  ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();
-- At most one request waits per table: a marker that arrives while one is pending is the same reload.
CREATE UNIQUE INDEX reloads_one_pending ON cdc_registry.reloads (slot_name, schema_name, table_name) WHERE state = 'pending';

-- The initial export of every published table is asked for once per slot, by the first `run`.
-- Slots registered before this migration are taken as exported (they streamed from their start).
ALTER TABLE cdc_registry.slot_state ADD COLUMN initial_export_requested boolean NOT NULL DEFAULT true;
ALTER TABLE cdc_registry.slot_state ALTER COLUMN initial_export_requested SET DEFAULT false;


-- The role `run` uses when it is not the one that set up the registry (`init --url`): tables that
-- join the publication are granted SELECT to it, since an export reads them with COPY.
ALTER TABLE cdc_registry.settings ADD COLUMN reader_role text;

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
    EXECUTE format('ALTER PUBLICATION %I DROP TABLE %I.%I', pub, r.schema_name, r.table_name);
    action := 'removed'; schema_name := r.schema_name; table_name := r.table_name;
    RETURN NEXT;
  END LOOP;

  PERFORM set_config('pg_egress.reconciling', 'off', true);
END
$fn$;

-- Last comment of each table that was not a reload marker, so that a marker's table gets its own
-- comment back after the reload (at ddl_command_end the marker has already replaced it).
CREATE TABLE cdc_registry.comments (
  relid           oid PRIMARY KEY,
  comment         text
);

-- `pg-egress reload` issues the marker through this function, so the operator need not own the
-- table; the request id lets `reload --wait` find its operation.
CREATE FUNCTION cdc_registry.request_reload(rel regclass, request text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM set_config('pg_egress.request_id', request, true);
  EXECUTE format('COMMENT ON TABLE %s IS %L', rel, 'pg-egress:reload');
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.request_reload(regclass, text) FROM PUBLIC;

-- Puts a table's comment back after its reload, unless someone changed it meanwhile.
CREATE FUNCTION cdc_registry.restore_comment(rel oid, previous text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF obj_description(rel, 'pg_class') IS DISTINCT FROM 'pg-egress:reload' THEN RETURN false; END IF;
  PERFORM set_config('pg_egress.restoring', 'on', true);
  EXECUTE format('COMMENT ON TABLE %s IS %L', rel::regclass, previous);
  RETURN true;
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.restore_comment(oid, text) FROM PUBLIC;

-- Emits a reload request into the WAL at the position of the transaction that asks for it.
CREATE FUNCTION cdc_registry.emit_reload(reason text, nsp text, tab text, rel oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM pg_logical_emit_message(true, 'pg-egress:reload', jsonb_build_object(
    'reason', reason, 'schema', nsp, 'table', tab, 'relid', rel,
    'previous_comment', (SELECT c.comment FROM cdc_registry.comments c WHERE c.relid = rel),
    'has_previous', reason = 'marker',
    'request_id', NULLIF(current_setting('pg_egress.request_id', true), ''))::text);
END
$fn$;

-- The DDL trigger, now also: (1) a table that the publication gains through DDL without being
-- created by it (DETACH PARTITION, SET SCHEMA, SET LOGGED, a new primary key) is reloaded from a
-- snapshot after this transaction, since its earlier rows were never streamed; (2) COMMENT ON
-- TABLE ... IS 'pg-egress:reload' is a reload marker; any other table comment is remembered.
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
      -- Partitions are published through their root (publish_via_partition_root).
      CONTINUE WHEN kind NOT IN ('r', 'p') OR ispart;
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
END
$fn$;

-- A batch is a flush of streaming windows or the registration of one reload operation.
ALTER TABLE cdc_registry.batches ADD COLUMN kind text NOT NULL DEFAULT 'flush' CHECK (kind IN ('flush', 'reload'));
