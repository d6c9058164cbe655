-- Partitioned tables as leaves (SPEC §3 "Partitioned tables", issue 13 item 1).
--
-- The publication publishes leaf partitions, not roots (publish_via_partition_root = false), so a
-- leaf's TRUNCATE, and an UPDATE that moves a row to another partition (a DELETE in the old leaf,
-- an INSERT in the new one), reach the leaf's own files. A root's membership (which leaves it has)
-- is not carried by row changes: it is captured by the DDL event trigger at the exact WAL position
-- of the DDL that changes it (CREATE ... PARTITION OF, ATTACH, DETACH, DROP), as a transactional
-- logical message 'pg-egress:partitions', and written as the root's partitions.yml.
-- https://www.postgresql.org/docs/15/sql-createpublication.html (publish_via_partition_root)
-- https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-INFO-PARTITION

-- partitions.yml is registered like any file of a flush.
ALTER TABLE cdc_registry.files DROP CONSTRAINT files_file_type_check;
ALTER TABLE cdc_registry.files ADD CONSTRAINT files_file_type_check
  CHECK (file_type IN ('streaming', 'full_reload', 'schema', 'ddl', 'manifest', 'batch', 'partitions'));

-- Roots whose membership a publication tracks, and their leaves as last captured. A leaf that left
-- its root keeps its row (current = false): the daemon decides from it whether a relation in the
-- stream was a leaf of a selected root at that point of the WAL, which the catalog of now cannot
-- tell (the leaf may have been detached since).
CREATE TABLE cdc_registry.partition_roots (
  publication     text NOT NULL,
  root            oid NOT NULL,
  schema_name     text NOT NULL,
  table_name      text NOT NULL,
  PRIMARY KEY (publication, root)
);
CREATE TABLE cdc_registry.partition_members (
  publication     text NOT NULL,
  root            oid NOT NULL,
  root_schema     text NOT NULL,
  root_name       text NOT NULL,
  leaf            oid NOT NULL,
  schema_name     text NOT NULL,
  table_name      text NOT NULL,
  current         boolean NOT NULL DEFAULT true,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (publication, root, leaf)
);
CREATE INDEX partition_members_leaf_idx ON cdc_registry.partition_members (publication, leaf);

-- The partitioned table whose leaves this relation selects, for a publication: the top-most
-- ancestor (relkind 'p') that tables.include selects, or NULL. pg_partition_ancestors lists the
-- relation itself first, then its parents upwards.
CREATE FUNCTION cdc_registry.selected_root(pub text, rel oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT a.relid
  FROM pg_partition_ancestors(rel) WITH ORDINALITY AS a(relid, ord)
  JOIN pg_class c ON c.oid = a.relid AND c.relkind = 'p'
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN cdc_registry.settings s ON s.publication = pub
  WHERE cdc_registry.matches(s.include, s.exclude, n.nspname, c.relname)
  ORDER BY a.ord DESC
  LIMIT 1
$fn$;

-- Leaves only: ordinary permanent tables, a partition included, that match on their own name or
-- whose partitioned ancestor matches (a root selects its leaves, present and future, at any depth;
-- an exclude pattern that names the leaf itself still excludes it). Partitioned tables (roots and
-- intermediate levels) have no rows of their own and are never published or exported.
-- Set-based (the selected partitioned tables' trees, walked once): the DDL trigger runs this on
-- every DDL, and a database may have thousands of partitions.
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
  SELECT c.oid, n.nspname::text, c.relname::text, cdc_registry.has_identity(c.oid)
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

-- Publishes exactly the selected leaves and tables, every operation, NOT via the partition root.
-- Returns what it changed: options (operations narrowed), via_root (publish_via_partition_root
-- was on: leaves' changes went to the root), identity_full, added, removed.
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
REVOKE ALL ON FUNCTION cdc_registry.reconcile_publication(text) FROM PUBLIC;

-- Publications made before this migration published via the root: switch them here, so the
-- daemon's next check does not take the switch for someone else's change (a gap). Its
-- reconcile then replaces each root by its leaves, and exports the leaves ('joined').
DO $do$
DECLARE
  s record;
BEGIN
  FOR s IN SELECT st.publication FROM cdc_registry.settings st
           JOIN pg_publication p ON p.pubname = st.publication WHERE p.pubviaroot LOOP
    BEGIN
      EXECUTE format('ALTER PUBLICATION %I SET (publish_via_partition_root = false)', s.publication);
    EXCEPTION WHEN insufficient_privilege THEN
      -- Not the publication's owner: reconcile_publication switches it (and records a gap).
      RAISE WARNING 'pg-egress: could not switch publication % to publish leaf partitions: %', s.publication, SQLERRM;
    END;
  END LOOP;
END
$do$;

-- Partitioned tables whose membership a publication tracks: selected by tables.include, with no
-- selected partitioned ancestor above them (multi-level partitioning: the top-most selected level
-- is the root; its partitions.yml lists the leaves of every level below).
CREATE FUNCTION cdc_registry.selected_roots(pub text) RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT c.oid FROM pg_class c
  WHERE c.relkind = 'p' AND c.relpersistence = 'p'
    AND cdc_registry.selected_root(pub, c.oid) = c.oid
$fn$;

-- Emits one root's membership change into the WAL, inside the transaction that made it.
CREATE FUNCTION cdc_registry.emit_partitions(payload jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM pg_logical_emit_message(true, 'pg-egress:partitions', payload::text);
END
$fn$;

-- Compares each given root's leaves now with the leaves last captured, records the difference and
-- emits it ('pg-egress:partitions'): kind initial (the root's first appearance: every leaf), create
-- (a leaf created by this CREATE TABLE ... PARTITION OF), attach, detach, drop (the leaf is gone).
-- A root seen for the first time emits even with no leaf, so every root has an initial record.
-- `tag` is the command tag of the DDL (NULL when the daemon's own check calls it), `created` the
-- tables that DDL created. Returns the number of roots whose membership was emitted.
CREATE FUNCTION cdc_registry.sync_partitions(pub text, roots oid[], tag text, created oid[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  ro oid;
  rs text;
  rn text;
  first boolean;
  leaves jsonb;
  changes jsonb;
  emitted integer := 0;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM cdc_registry.settings st WHERE st.publication = pub) THEN RETURN 0; END IF;
  FOR ro IN SELECT DISTINCT x FROM unnest(roots) AS x WHERE x IS NOT NULL ORDER BY 1 LOOP
    rs := NULL; rn := NULL;
    SELECT n.nspname, c.relname INTO rs, rn FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = ro AND c.relkind = 'p' AND cdc_registry.selected_root(pub, c.oid) = c.oid;
    first := NOT EXISTS (SELECT 1 FROM cdc_registry.partition_roots pr WHERE pr.publication = pub AND pr.root = ro);
    IF rs IS NULL THEN
      -- Not a tracked root (any more): a dropped root loses every leaf; one that is no longer
      -- selected (or is now below a selected root) is forgotten without a record.
      CONTINUE WHEN first;
      SELECT pr.schema_name, pr.table_name INTO rs, rn FROM cdc_registry.partition_roots pr WHERE pr.publication = pub AND pr.root = ro;
      IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ro) THEN
        DELETE FROM cdc_registry.partition_roots pr WHERE pr.publication = pub AND pr.root = ro;
        UPDATE cdc_registry.partition_members m SET current = false, updated_at = now() WHERE m.publication = pub AND m.root = ro AND m.current;
        CONTINUE;
      END IF;
    END IF;

    -- The leaves now (none when the root is gone), with their immediate parent and bounds.
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
             'schema', n.nspname, 'name', c.relname, 'oid', c.oid,
             'parent', jsonb_build_object('schema', pn.nspname, 'name', p.relname),
             'bounds', pg_get_expr(c.relpartbound, c.oid)) ORDER BY n.nspname, c.relname), '[]'::jsonb)
      INTO leaves
      FROM pg_partition_tree(ro) t
      JOIN pg_class c ON c.oid = t.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class p ON p.oid = t.parentrelid
      JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE t.isleaf AND c.relkind = 'r' AND c.relpersistence = 'p'
       AND EXISTS (SELECT 1 FROM pg_class rc WHERE rc.oid = ro);

    SELECT COALESCE(jsonb_agg(ch ORDER BY ch->>'schema', ch->>'name'), '[]'::jsonb) INTO changes FROM (
      SELECT jsonb_build_object('kind', CASE WHEN first THEN 'initial'
                                              WHEN (l->>'oid')::oid = ANY (created) THEN 'create'
                                              ELSE 'attach' END,
                                'schema', l->>'schema', 'name', l->>'name', 'oid', (l->>'oid')::oid) AS ch
      FROM jsonb_array_elements(leaves) l
      WHERE first OR NOT EXISTS (SELECT 1 FROM cdc_registry.partition_members m
                                 WHERE m.publication = pub AND m.root = ro AND m.leaf = (l->>'oid')::oid AND m.current)
      UNION ALL
      SELECT jsonb_build_object('kind', CASE WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.leaf) THEN 'detach' ELSE 'drop' END,
                                'schema', m.schema_name, 'name', m.table_name, 'oid', m.leaf)
      FROM cdc_registry.partition_members m
      WHERE NOT first AND m.publication = pub AND m.root = ro AND m.current
        AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(leaves) l WHERE (l->>'oid')::oid = m.leaf)) x;

    -- Record the leaves as they are now (names too: a renamed leaf is the same leaf).
    UPDATE cdc_registry.partition_members m SET current = false, updated_at = now()
     WHERE m.publication = pub AND m.root = ro AND m.current
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(leaves) l WHERE (l->>'oid')::oid = m.leaf);
    INSERT INTO cdc_registry.partition_members AS m (publication, root, root_schema, root_name, leaf, schema_name, table_name, current)
    SELECT pub, ro, rs, rn, (l->>'oid')::oid, l->>'schema', l->>'name', true FROM jsonb_array_elements(leaves) l
    ON CONFLICT (publication, root, leaf) DO UPDATE
      SET root_schema = EXCLUDED.root_schema, root_name = EXCLUDED.root_name, schema_name = EXCLUDED.schema_name,
          table_name = EXCLUDED.table_name, current = true, updated_at = now()
      WHERE (m.root_schema, m.root_name, m.schema_name, m.table_name, m.current)
            IS DISTINCT FROM (EXCLUDED.root_schema, EXCLUDED.root_name, EXCLUDED.schema_name, EXCLUDED.table_name, true);
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ro) THEN
      INSERT INTO cdc_registry.partition_roots AS r (publication, root, schema_name, table_name) VALUES (pub, ro, rs, rn)
      ON CONFLICT (publication, root) DO UPDATE SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name
        WHERE (r.schema_name, r.table_name) IS DISTINCT FROM (EXCLUDED.schema_name, EXCLUDED.table_name);
    ELSE
      DELETE FROM cdc_registry.partition_roots pr WHERE pr.publication = pub AND pr.root = ro;
    END IF;

    CONTINUE WHEN NOT first AND jsonb_array_length(changes) = 0;
    PERFORM cdc_registry.emit_partitions(jsonb_build_object(
      'publication', pub,
      'root', jsonb_build_object('schema', rs, 'name', rn, 'oid', ro),
      'partitions', leaves,
      'changes', changes,
      'command_tag', tag,
      'command', CASE WHEN tag IS NULL THEN NULL ELSE current_query() END));
    emitted := emitted + 1;
  END LOOP;
  RETURN emitted;
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.sync_partitions(text, oid[], text, oid[]) FROM PUBLIC;

-- The daemon's check (at start, every 10 s): every selected root and every tracked one. Catches a
-- root's first appearance, and membership changes made while DDL capture was off (recorded at the
-- check's position, not the DDL's).
CREATE FUNCTION cdc_registry.sync_all_partitions(pub text) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT cdc_registry.sync_partitions(pub, ARRAY(
    SELECT r FROM cdc_registry.selected_roots(pub) r
    UNION SELECT pr.root FROM cdc_registry.partition_roots pr WHERE pr.publication = pub), NULL, '{}')
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.sync_all_partitions(text) FROM PUBLIC;

-- The last captured definition of each partitioned table. An ALTER TABLE on a partitioned table
-- changes its leaves too, but the event trigger reports only the partitioned table; when its
-- definition changed, the DDL is recorded for each leaf as well (their ddl.sql and schema.yml).
CREATE TABLE cdc_registry.partitioned_defs (
  relid           oid PRIMARY KEY,
  definition      jsonb NOT NULL
);
INSERT INTO cdc_registry.partitioned_defs (relid, definition)
SELECT c.oid, cdc_registry.table_definition(c.oid) - 'relid' - 'schema' - 'table'
FROM pg_class c WHERE c.relkind = 'p';

-- Records a partitioned table's DDL for each of its leaves when the command changed its columns,
-- primary key or replica identity (not for ATTACH or DETACH, which change neither).
CREATE FUNCTION cdc_registry.propagate_partitioned_ddl(rels oid[], tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  p record;
  l record;
  d jsonb;
  old jsonb;
BEGIN
  FOR p IN SELECT c.oid FROM pg_class c WHERE c.oid = ANY (rels) AND c.relkind = 'p' LOOP
    d := cdc_registry.table_definition(p.oid) - 'relid' - 'schema' - 'table';
    SELECT pd.definition INTO old FROM cdc_registry.partitioned_defs pd WHERE pd.relid = p.oid;
    CONTINUE WHEN old IS NOT DISTINCT FROM d;
    INSERT INTO cdc_registry.partitioned_defs (relid, definition) VALUES (p.oid, d)
      ON CONFLICT (relid) DO UPDATE SET definition = EXCLUDED.definition;
    CONTINUE WHEN old IS NULL AND tag = 'CREATE TABLE';
    FOR l IN SELECT c.oid, n.nspname::text AS s, c.relname::text AS t
             FROM pg_partition_tree(p.oid) pt JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE pt.isleaf AND c.relkind = 'r' LOOP
      PERFORM cdc_registry.record_ddl(tag, 'table', format('%I.%I', l.s, l.t), l.s, l.t, l.oid,
                                      cdc_registry.table_definition(l.oid), false);
    END LOOP;
  END LOOP;
END
$fn$;

-- Called by on_ddl_command_end: the roots of the tables the command touched (a CREATE TABLE ...
-- PARTITION OF reports the new leaf, ATTACH and DETACH report the parent), synced for every
-- publication. DETACH ... CONCURRENTLY runs in two transactions; the trigger fires at the end of
-- the second, which is when the leaf leaves the tree (until then it is a partition, still published).
CREATE FUNCTION cdc_registry.capture_partitions_ddl(tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  s record;
  roots oid[] := '{}';
  rels oid[] := '{}';
  created oid[] := '{}';
BEGIN
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

-- Called by on_sql_drop: a dropped leaf leaves its root ('drop'); a dropped root loses them all.
CREATE FUNCTION cdc_registry.capture_partitions_drop(tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  s record;
  roots oid[];
  dropped oid[];
BEGIN
  SELECT array_agg(o.objid) INTO dropped FROM pg_event_trigger_dropped_objects() o
   WHERE o.classid = 'pg_class'::regclass AND o.object_type = 'table' AND NOT o.is_temporary;
  IF dropped IS NULL THEN RETURN; END IF;
  FOR s IN SELECT st.publication FROM cdc_registry.settings st LOOP
    SELECT array_agg(DISTINCT x) INTO roots FROM (
      SELECT m.root AS x FROM cdc_registry.partition_members m WHERE m.publication = s.publication AND m.leaf = ANY (dropped) AND m.current
      UNION SELECT pr.root FROM cdc_registry.partition_roots pr WHERE pr.publication = s.publication AND pr.root = ANY (dropped)) y;
    IF roots IS NOT NULL THEN
      PERFORM cdc_registry.sync_partitions(s.publication, roots, tag, '{}');
    END IF;
  END LOOP;
END
$fn$;

-- The DDL trigger functions of sql/004 and sql/002, unchanged but for the lines marked
-- [007 partitions]: a leaf's own DDL is recorded (it is a table in the layout), and the
-- membership capture above runs at the end of each.
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

CREATE OR REPLACE FUNCTION cdc_registry.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE object_type = 'table' AND NOT is_temporary
               AND schema_name NOT IN ('cdc_registry', 'pg_catalog', 'information_schema') LOOP
    BEGIN
      PERFORM cdc_registry.record_ddl(tg_tag, obj.object_type, obj.object_identity, obj.schema_name,
                                      obj.object_name, obj.objid, NULL, true);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pg-egress DDL capture failed for %: %', obj.object_identity, SQLERRM;
    END;
  END LOOP;

  -- [007 partitions] A dropped leaf leaves its root; a dropped root loses every leaf.
  BEGIN
    PERFORM cdc_registry.capture_partitions_drop(tg_tag);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg-egress partition capture failed: %', SQLERRM;
  END;
END
$fn$;

-- A reload of a partitioned table is a reload of each of its leaves: one ctid-chunked export per
-- leaf, all from one snapshot, in parallel across reload.workers. The root's operation ends as
-- 'expanded' in the same transaction that asks for a pending operation per published leaf, with
-- the root's reason, request ids (so `reload --wait` follows the leaves) and gap. Returns how many.
ALTER TABLE cdc_registry.reloads DROP CONSTRAINT reloads_state_check;
ALTER TABLE cdc_registry.reloads ADD CONSTRAINT reloads_state_check
  CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled', 'expanded'));

CREATE FUNCTION cdc_registry.expand_root_reload(op bigint, pub text) RETURNS integer
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
    INSERT INTO cdc_registry.reloads AS x (slot_name, schema_name, table_name, relid, reason, requested_lsn, request_ids, gap_id)
    VALUES (r.slot_name, l.s, l.t, l.oid, r.reason, r.requested_lsn, r.request_ids, r.gap_id)
    ON CONFLICT (slot_name, schema_name, table_name) WHERE state = 'pending' DO UPDATE
      SET request_ids = ARRAY(SELECT DISTINCT unnest(x.request_ids || EXCLUDED.request_ids)),
          gap_id = COALESCE(EXCLUDED.gap_id, x.gap_id),
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
