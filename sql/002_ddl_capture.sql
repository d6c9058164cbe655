-- DDL capture (SPEC §7, §8). An event trigger records every DDL command on a user table in
-- cdc_registry.ddl_history and emits it into the WAL as a transactional logical decoding message
-- (prefix 'pg-egress:ddl'), so the stream sees it at its exact position, inside the transaction
-- that ran it, and a rolled-back DDL never appears.
-- https://www.postgresql.org/docs/15/event-triggers.html
-- https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-REPLICATION (pg_logical_emit_message)

-- The table's definition as schema.yml needs it, computed inside the DDL's own transaction.
CREATE FUNCTION cdc_registry.table_definition(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT jsonb_build_object(
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
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = rel
$fn$;

-- Does schema.table match a publication's include patterns and none of its exclude patterns?
CREATE FUNCTION cdc_registry.matches(include jsonb, exclude jsonb, sch text, tab text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT EXISTS (SELECT 1 FROM jsonb_array_elements(include) p
                 WHERE sch ~ (p->>'schema') AND tab ~ (p->>'table'))
     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(exclude) p
                     WHERE sch ~ (p->>'schema') AND tab ~ (p->>'table'))
$fn$;

-- Records one DDL command in the history and emits it into the WAL inside the same transaction.
CREATE FUNCTION cdc_registry.record_ddl(tag text, obj_type text, identity text, nsp text, tab text, rel oid, def jsonb, dropped boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO cdc_registry.ddl_history (command_tag, object_type, schema_name, table_name, relid, command, definition)
  VALUES (tag, obj_type, nsp, tab, rel, current_query(), def);
  PERFORM pg_logical_emit_message(true, 'pg-egress:ddl', jsonb_build_object(
    'command_tag', tag,
    'object_type', obj_type,
    'object_identity', identity,
    'schema', nsp,
    'table', tab,
    'relid', rel,
    'command', current_query(),
    'definition', def,
    'dropped', dropped)::text);
END
$fn$;

-- SECURITY DEFINER: an application user who creates a table must not need rights on our
-- publication, and must never have its DDL fail because of us (errors become warnings).
CREATE FUNCTION cdc_registry.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  cmd record;
  rel oid;
  nsp text;
  tab text;
  kind "char";
  ispart boolean;
  s record;
BEGIN
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

      -- A new table that matches a publication's patterns joins it at once, in the creating
      -- transaction, so the rows inserted by that same transaction are published too.
      IF cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN
        FOR s IN SELECT * FROM cdc_registry.settings LOOP
          IF cdc_registry.matches(s.include, s.exclude, nsp, tab)
             AND EXISTS (SELECT 1 FROM pg_publication WHERE pubname = s.publication) THEN
            EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', s.publication, nsp, tab);
          END IF;
        END LOOP;
      END IF;

      PERFORM cdc_registry.record_ddl(cmd.command_tag, cmd.object_type, cmd.object_identity, nsp, tab, rel,
                                      cdc_registry.table_definition(rel), false);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pg-egress DDL capture failed for %: %', cmd.object_identity, SQLERRM;
    END;
  END LOOP;
END
$fn$;

CREATE FUNCTION cdc_registry.on_sql_drop() RETURNS event_trigger
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
END
$fn$;

-- Event triggers need a superuser. Without one, DDL capture is off (the daemon warns at start
-- and `pg-egress init` run by a superuser turns it on; see README "Privileges").
DO $do$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER pg_egress_ddl_command_end ON ddl_command_end
      EXECUTE FUNCTION cdc_registry.on_ddl_command_end();
    CREATE EVENT TRIGGER pg_egress_sql_drop ON sql_drop
      EXECUTE FUNCTION cdc_registry.on_sql_drop();
  ELSE
    RAISE WARNING 'pg-egress: not a superuser, DDL capture event triggers not created';
  END IF;
END
$do$;
