-- (1) Authenticated control messages (SPEC §8). Any role may call pg_logical_emit_message(), so a
-- 'pg-egress:*' message counts only when it carries an HMAC-SHA256, under a key that only the
-- registry's owner (and the daemon's role, granted by `init --url`) can read, over
-- (top-level xid, prefix, payload). The xid binds it to the transaction that emitted it: a genuine
-- payload replayed in another transaction fails. The daemon knows the xid from pgoutput's Begin.
-- (2) Value-changing DDL (SPEC §6): DDL that changes the text of existing rows without row changes
-- in the WAL asks for a reload of the table inside its own transaction, like a marker; a table
-- renamed away from a name ends that name's rows with a boundary (see README "Out-of-band
-- operations").
-- https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-REPLICATION
-- https://www.postgresql.org/docs/15/event-trigger-definition.html (ddl_command_end, table_rewrite)
-- https://datatracker.ietf.org/doc/html/rfc2104 (HMAC)

-- ---------------------------------------------------------------------------------------------
-- (1) Message authentication
-- ---------------------------------------------------------------------------------------------

-- One key per registry, from the server's strong random source (gen_random_uuid() uses
-- pg_strong_random(); four of them carry 488 random bits). created_lsn: messages of transactions
-- that committed before it were emitted by the functions of earlier versions, without a MAC.
CREATE TABLE cdc_registry.message_key (
  id              boolean PRIMARY KEY DEFAULT true CHECK (id),
  key             bytea NOT NULL CHECK (length(key) = 32),
  created_lsn     pg_lsn NOT NULL DEFAULT pg_current_wal_lsn(),
  created_at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON cdc_registry.message_key FROM PUBLIC;
INSERT INTO cdc_registry.message_key (key)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- HMAC-SHA256 (RFC 2104) from the built-in sha256(); no pgcrypto needed.
CREATE FUNCTION cdc_registry.hmac_sha256(key bytea, msg bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  k bytea := key;
  ipad bytea;
  opad bytea;
BEGIN
  IF length(k) > 64 THEN k := sha256(k); END IF;
  k := k || decode(repeat('00', 64 - length(k)), 'hex');
  ipad := k;
  opad := k;
  FOR i IN 0..63 LOOP
    ipad := set_byte(ipad, i, get_byte(k, i) # 54);   -- 0x36
    opad := set_byte(opad, i, get_byte(k, i) # 92);   -- 0x5c
  END LOOP;
  RETURN sha256(opad || sha256(ipad || msg));
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.hmac_sha256(bytea, bytea) FROM PUBLIC;

-- The one way pg-egress's SQL emits a control message. Content (bytes):
--   'pg-egress-mac1 ' || hex(HMAC(key, xid || '\n' || prefix || '\n' || payload)) || '\n' || payload
-- with xid the top-level transaction id modulo 2^32 (as pgoutput's Begin carries it) and payload
-- in UTF-8. SECURITY DEFINER to read the key; not executable by PUBLIC, or anyone could have any
-- payload signed.
CREATE FUNCTION cdc_registry.emit_message(prefix text, payload text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  k bytea;
  body bytea := convert_to(payload, 'UTF8');
  xid bigint := (pg_current_xact_id()::text::bigint) % 4294967296;
BEGIN
  SELECT m.key INTO STRICT k FROM cdc_registry.message_key m;
  PERFORM pg_logical_emit_message(true, prefix,
    convert_to('pg-egress-mac1 ' || encode(cdc_registry.hmac_sha256(k, convert_to(xid::text || E'\n' || prefix || E'\n', 'UTF8') || body), 'hex') || E'\n', 'UTF8') || body);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.emit_message(text, text) FROM PUBLIC;

-- >>> ddl helper: record_ddl as in sql/002, only its emit goes through emit_message (signed).
CREATE OR REPLACE FUNCTION cdc_registry.record_ddl(tag text, obj_type text, identity text, nsp text, tab text, rel oid, def jsonb, dropped boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO cdc_registry.ddl_history (command_tag, object_type, schema_name, table_name, relid, command, definition)
  VALUES (tag, obj_type, nsp, tab, rel, current_query(), def);
  PERFORM cdc_registry.emit_message('pg-egress:ddl', jsonb_build_object(
    'command_tag', tag,
    'object_type', obj_type,
    'object_identity', identity,
    'schema', nsp,
    'table', tab,
    'relid', rel,
    'command', current_query(),
    'definition', def,
    'dropped', dropped,
    -- A dropped partitioned root (sql/007 still tracks it here: its capture runs after this) has
    -- no rows of its own, so its folder gets no T boundary.
    'partitioned', dropped AND EXISTS (SELECT 1 FROM cdc_registry.partition_roots pr WHERE pr.root = rel))::text);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.record_ddl(text, text, text, text, text, oid, jsonb, boolean) FROM PUBLIC;

-- emit_reload as in sql/004, signed.
CREATE OR REPLACE FUNCTION cdc_registry.emit_reload(reason text, nsp text, tab text, rel oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM cdc_registry.emit_message('pg-egress:reload', jsonb_build_object(
    'reason', reason, 'schema', nsp, 'table', tab, 'relid', rel,
    'previous_comment', (SELECT c.comment FROM cdc_registry.comments c WHERE c.relid = rel),
    'has_previous', reason = 'marker',
    'request_id', NULLIF(current_setting('pg_egress.request_id', true), ''))::text);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.emit_reload(text, text, text, oid) FROM PUBLIC;
-- emit_partitions as in sql/007 (a root's membership change), signed.
CREATE OR REPLACE FUNCTION cdc_registry.emit_partitions(payload jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM cdc_registry.emit_message('pg-egress:partitions', payload::text);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.emit_partitions(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_registry.capture_partitions_ddl(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_registry.capture_partitions_drop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_registry.propagate_partitioned_ddl(oid[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_registry.expand_root_reload(bigint, text) FROM PUBLIC;
-- <<< ddl helper
REVOKE ALL ON FUNCTION cdc_registry.table_definition(oid) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- (2) Value-changing DDL
-- ---------------------------------------------------------------------------------------------

ALTER TABLE cdc_registry.reloads DROP CONSTRAINT IF EXISTS reloads_reason_check;
ALTER TABLE cdc_registry.reloads ADD CONSTRAINT reloads_reason_check
  CHECK (reason IN ('marker', 'initial', 'joined', 'gap', 'operator', 'ddl'));

-- The last shape seen of each published table: its name and columns by attnum, with what decides
-- the text of existing values (type, typmod, and "atoms" of the types inside it: enum labels,
-- composite attribute lists). A DDL command's effect on existing rows is the difference between
-- this and the catalog at ddl_command_end. dropped_names: columns dropped since the table's last
-- reload request (a column added later under one of these names must not inherit old values).
CREATE TABLE cdc_registry.table_shapes (
  relid           oid PRIMARY KEY,
  shape           jsonb NOT NULL,
  dropped_names   text[] NOT NULL DEFAULT '{}',
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- What in a type decides the text of a stored value beyond its own output function: enum labels
-- (one atom per pg_enum row, so RENAME VALUE removes an atom and ADD VALUE only adds one) and
-- composite attribute lists (one atom per composite; names are not in the text, types are),
-- through arrays, domains, ranges and multiranges.
CREATE FUNCTION cdc_registry.type_atoms(typ oid, depth int DEFAULT 0) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  t record;
  out text[] := '{}';
  a record;
BEGIN
  IF depth > 20 THEN RETURN out; END IF;
  SELECT * INTO t FROM pg_type WHERE oid = typ;
  IF NOT FOUND THEN RETURN out; END IF;
  IF t.typtype = 'e' THEN
    SELECT array_agg(format('enum %s value %s = %L', typ::regtype, e.oid, e.enumlabel) ORDER BY e.oid) INTO out
      FROM pg_enum e WHERE e.enumtypid = typ;
    RETURN COALESCE(out, '{}');
  ELSIF t.typtype = 'd' THEN
    RETURN cdc_registry.type_atoms(t.typbasetype, depth + 1);
  ELSIF t.typtype = 'r' THEN
    RETURN cdc_registry.type_atoms((SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = typ), depth + 1);
  ELSIF t.typtype = 'm' THEN
    RETURN cdc_registry.type_atoms((SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = typ), depth + 1);
  ELSIF t.typelem <> 0 AND t.typlen = -1 THEN
    RETURN cdc_registry.type_atoms(t.typelem, depth + 1);
  ELSIF t.typtype = 'c' THEN
    out := ARRAY[format('composite %s (%s)', typ::regtype,
      (SELECT string_agg(format_type(x.atttypid, x.atttypmod), ', ' ORDER BY x.attnum)
         FROM pg_attribute x WHERE x.attrelid = t.typrelid AND x.attnum > 0 AND NOT x.attisdropped))];
    FOR a IN SELECT x.atttypid FROM pg_attribute x WHERE x.attrelid = t.typrelid AND x.attnum > 0 AND NOT x.attisdropped LOOP
      out := out || cdc_registry.type_atoms(a.atttypid, depth + 1);
    END LOOP;
    RETURN out;
  END IF;
  RETURN out;
END
$fn$;

-- A table's shape now: name and columns (attnum, name, type, whether existing rows got a value when
-- it was added, generated), as cdc_registry.table_shapes keeps it.
CREATE FUNCTION cdc_registry.table_shape(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT jsonb_build_object(
    'schema', n.nspname,
    'table', c.relname,
    'columns', COALESCE((
      SELECT jsonb_agg(jsonb_build_object(
               'attnum', a.attnum,
               'name', a.attname,
               'type', format_type(a.atttypid, a.atttypmod),
               'type_oid', a.atttypid,
               'typmod', a.atttypmod,
               'generated', a.attgenerated <> '',
               'filled', a.atthasdef OR a.atthasmissing OR a.attidentity <> ''
                         OR EXISTS (SELECT 1 FROM pg_type d WHERE d.oid = a.atttypid AND d.typtype = 'd' AND d.typdefaultbin IS NOT NULL),
               'atoms', to_jsonb(cdc_registry.type_atoms(a.atttypid))) ORDER BY a.attnum)
      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = rel
$fn$;

-- Does a cast from one column type to another (no USING) keep the text of every value? Only the
-- cases migrations use most and that are known exact; anything else is taken to change values.
CREATE FUNCTION cdc_registry.same_text_cast(old_type oid, old_mod int, new_type oid, new_mod int) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  o oid := old_type;
  nw oid := new_type;
BEGIN
  -- A domain prints as its base type.
  WHILE (SELECT typtype FROM pg_type WHERE oid = o) = 'd' LOOP
    SELECT typbasetype, typtypmod INTO o, old_mod FROM pg_type WHERE oid = o;
  END LOOP;
  WHILE (SELECT typtype FROM pg_type WHERE oid = nw) = 'd' LOOP
    SELECT typbasetype, typtypmod INTO nw, new_mod FROM pg_type WHERE oid = nw;
  END LOOP;
  -- text and varchar: a value that does not fit varchar(n) makes the ALTER fail.
  IF o IN ('text'::regtype, 'varchar'::regtype) AND nw IN ('text'::regtype, 'varchar'::regtype) THEN RETURN true; END IF;
  -- Widening integers.
  IF (o, nw) IN (('int2'::regtype, 'int4'::regtype), ('int2'::regtype, 'int8'::regtype), ('int4'::regtype, 'int8'::regtype)) THEN RETURN true; END IF;
  -- An integer into an unconstrained numeric prints the same digits.
  IF o IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AND nw = 'numeric'::regtype AND new_mod = -1 THEN RETURN true; END IF;
  -- numeric keeps its display scale unless the new typmod sets another scale.
  IF o = 'numeric'::regtype AND nw = 'numeric'::regtype THEN
    RETURN new_mod = -1 OR (old_mod <> -1 AND ((old_mod - 4) & 65535) = ((new_mod - 4) & 65535));
  END IF;
  IF o = nw AND o = 'varbit'::regtype THEN RETURN true; END IF;
  -- More fractional digits of time keep the text; fewer round.
  IF o = nw AND o IN ('timestamp'::regtype, 'timestamptz'::regtype, 'time'::regtype, 'timetz'::regtype) THEN
    RETURN new_mod = -1 OR (old_mod <> -1 AND new_mod >= old_mod);
  END IF;
  RETURN o = nw AND old_mod = new_mod;
END
$fn$;

-- Why a change from shape `old` to shape `cur` changes the text of existing rows (empty: it does
-- not). dropped: names dropped since the last reload; rewritten: ALTER rewrote the table (or a
-- partition of it) with new values (table_rewrite reason 2 or 4); may_use: the statement may have
-- a USING clause (a rewrite then may change any value, whatever the types).
CREATE FUNCTION cdc_registry.value_change_reasons(old jsonb, cur jsonb, dropped text[], rewritten boolean, may_use boolean)
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  out text[] := '{}';
  c jsonb;
  o jsonb;
  explained boolean := false;
  missing text[];
BEGIN
  IF old->>'schema' IS DISTINCT FROM cur->>'schema' OR old->>'table' IS DISTINCT FROM cur->>'table' THEN
    out := out || format('table %I.%I renamed to %I.%I', old->>'schema', old->>'table', cur->>'schema', cur->>'table');
  END IF;
  FOR c IN SELECT * FROM jsonb_array_elements(cur->'columns') LOOP
    SELECT x INTO o FROM jsonb_array_elements(old->'columns') x WHERE x->'attnum' = c->'attnum';
    IF o IS NULL THEN
      IF (c->>'generated')::boolean THEN
        explained := true;  -- a stored generated column is in no file
      ELSIF c->>'name' = ANY (dropped)
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(old->'columns') x WHERE x->>'name' = c->>'name') THEN
        out := out || format('column %I added in place of a dropped column of the same name', c->>'name');
      ELSIF (c->>'filled')::boolean THEN
        out := out || format('column %I added with a default (%s)', c->>'name', c->>'type');
      END IF;
      CONTINUE;
    END IF;
    IF o->>'name' <> c->>'name' THEN
      out := out || format('column %I renamed to %I', o->>'name', c->>'name');
    END IF;
    IF (o->>'generated')::boolean AND NOT (c->>'generated')::boolean THEN
      out := out || format('column %I is no longer generated', c->>'name');
      CONTINUE;
    END IF;
    CONTINUE WHEN (c->>'generated')::boolean;
    IF (o->>'type_oid', o->>'typmod') IS DISTINCT FROM (c->>'type_oid', c->>'typmod') THEN
      IF cdc_registry.same_text_cast((o->>'type_oid')::oid, (o->>'typmod')::int, (c->>'type_oid')::oid, (c->>'typmod')::int)
         AND NOT (rewritten AND may_use) THEN
        explained := true;
      ELSE
        out := out || format('column %I type %s -> %s', c->>'name', o->>'type', c->>'type');
      END IF;
    ELSE
      SELECT array_agg(x) INTO missing FROM jsonb_array_elements_text(o->'atoms') x
       WHERE NOT (c->'atoms') ? x;
      IF missing IS NOT NULL THEN
        out := out || format('column %I (%s): %s changed', c->>'name', c->>'type', array_to_string(missing, ', '));
      END IF;
    END IF;
  END LOOP;
  IF rewritten AND cardinality(out) = 0 AND (may_use OR NOT explained) THEN
    out := out || 'table rewritten by ALTER with new values'::text;
  END IF;
  RETURN out;
END
$fn$;

-- A reload request for value-changing DDL (reason 'ddl'), with the reasons for ddl.sql.
CREATE FUNCTION cdc_registry.emit_ddl_reload(nsp text, tab text, rel oid, detail text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM cdc_registry.emit_message('pg-egress:reload', jsonb_build_object(
    'reason', 'ddl', 'schema', nsp, 'table', tab, 'relid', rel, 'detail', detail,
    'previous_comment', NULL, 'has_previous', false, 'request_id', NULL)::text);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.emit_ddl_reload(text, text, oid, text) FROM PUBLIC;

-- Is the relation in a publication pg-egress manages?
CREATE FUNCTION cdc_registry.is_published(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (SELECT 1 FROM cdc_registry.settings s
                 JOIN pg_publication p ON p.pubname = s.publication
                 JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                 WHERE pr.prrelid = rel)
$fn$;

-- Every table below a relation: partitions and inheritance children, at any depth (ALTER on a
-- parent recurses to them; each may be published as a table of its own).
CREATE FUNCTION cdc_registry.inheritors(rel oid) RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  WITH RECURSIVE d(relid) AS (
    SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = rel
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.relid)
  SELECT relid FROM d
$fn$;

-- Compares one relation with its last shape, asks for a reload when existing values changed,
-- says when its name moved (the old name's rows end there), and remembers the new shape.
CREATE FUNCTION cdc_registry.check_value_change(rel oid, created boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  prev cdc_registry.table_shapes;
  cur jsonb;
  published boolean := cdc_registry.is_published(rel);
  rewritten boolean;
  reasons text[] := '{}';
  dropped text[] := '{}';
BEGIN
  SELECT * INTO prev FROM cdc_registry.table_shapes WHERE relid = rel;
  -- Neither published nor seen published: nothing to compare, nothing to remember.
  IF NOT published AND prev.relid IS NULL THEN RETURN; END IF;
  cur := cdc_registry.table_shape(rel);
  IF cur IS NULL THEN RETURN; END IF;
  IF created OR (prev.relid IS NULL AND NOT published) THEN
    IF published THEN
      INSERT INTO cdc_registry.table_shapes (relid, shape) VALUES (rel, cur)
        ON CONFLICT (relid) DO UPDATE SET shape = EXCLUDED.shape, dropped_names = '{}', updated_at = now();
    END IF;
    RETURN;
  END IF;
  -- Rewrites of the relation or of any table below it (table_rewrite fires per partition/child).
  rewritten := EXISTS (SELECT 1 FROM (SELECT rel UNION SELECT d FROM cdc_registry.inheritors(rel) d) p(relid)
                       WHERE p.relid::oid::text = ANY (string_to_array(current_setting('pg_egress.rewritten', true), ',')));
  IF prev.relid IS NULL THEN
    -- Published without a shape on record (joined without DDL before its first check): only a
    -- rewrite with new values can be seen.
    IF rewritten THEN reasons := ARRAY['table rewritten by ALTER with new values']; END IF;
  ELSE
    reasons := cdc_registry.value_change_reasons(prev.shape, cur, prev.dropped_names, rewritten,
                                                 current_query() ~* '\musing\M');
    IF prev.shape->>'schema' IS DISTINCT FROM cur->>'schema' OR prev.shape->>'table' IS DISTINCT FROM cur->>'table' THEN
      -- The old name's folder ends here (a table created later under that name starts empty).
      PERFORM cdc_registry.emit_message('pg-egress:moved', jsonb_build_object(
        'relid', rel, 'from', jsonb_build_object('schema', prev.shape->>'schema', 'table', prev.shape->>'table'),
        'to', jsonb_build_object('schema', cur->>'schema', 'table', cur->>'table'))::text);
    END IF;
    SELECT COALESCE(array_agg(DISTINCT x->>'name'), '{}') INTO dropped
      FROM jsonb_array_elements(prev.shape->'columns') x
     WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(cur->'columns') y WHERE y->'attnum' = x->'attnum');
    dropped := prev.dropped_names || dropped;
  END IF;
  IF NOT published THEN
    DELETE FROM cdc_registry.table_shapes WHERE relid = rel;
    RETURN;
  END IF;
  IF cardinality(reasons) > 0 THEN
    PERFORM cdc_registry.emit_ddl_reload(cur->>'schema', cur->>'table', rel, array_to_string(reasons, '; '));
    dropped := '{}';
  END IF;
  INSERT INTO cdc_registry.table_shapes (relid, shape, dropped_names) VALUES (rel, cur, dropped)
    ON CONFLICT (relid) DO UPDATE SET shape = EXCLUDED.shape, dropped_names = EXCLUDED.dropped_names, updated_at = now();
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.check_value_change(oid, boolean) FROM PUBLIC;

-- Tables whose stored values a change of type `typ` can change: columns of that type or of a type
-- containing it (arrays, domains, composites, ranges), and typed tables (CREATE TABLE OF).
CREATE FUNCTION cdc_registry.tables_using_type(typ oid) RETURNS SETOF oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  types oid[] := ARRAY[typ];
  more oid[];
BEGIN
  FOR i IN 1..20 LOOP
    SELECT array_agg(DISTINCT t.oid) INTO more FROM pg_type t
     WHERE NOT t.oid = ANY (types)
       AND (t.typelem = ANY (types) OR t.typbasetype = ANY (types)
            OR t.oid IN (SELECT r.rngtypid FROM pg_range r WHERE r.rngsubtype = ANY (types))
            OR t.oid IN (SELECT r.rngmultitypid FROM pg_range r WHERE r.rngtypid = ANY (types))
            OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.typrelid
                                            AND a.atttypid = ANY (types) AND NOT a.attisdropped)));
    EXIT WHEN more IS NULL;
    types := types || more;
  END LOOP;
  RETURN QUERY
    SELECT DISTINCT c.oid FROM pg_class c
     WHERE c.relkind IN ('r', 'p')
       AND (c.reloftype = ANY (types)
            OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                       AND NOT a.attisdropped AND a.atttypid = ANY (types)));
END
$fn$;

-- table_rewrite: remember, for this transaction, which tables ALTER rewrote with new values
-- (reason bits 2 = default values, 4 = column rewrite; 1 = persistence and 8 = access method keep
-- the values). check_value_change reads it at ddl_command_end.
CREATE FUNCTION cdc_registry.on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF pg_event_trigger_table_rewrite_reason() & 6 <> 0 THEN
    PERFORM set_config('pg_egress.rewritten',
      concat_ws(',', NULLIF(current_setting('pg_egress.rewritten', true), ''), pg_event_trigger_table_rewrite_oid()::oid::text), true);
  END IF;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pg-egress could not note a table rewrite: %', SQLERRM;
END
$fn$;

-- ddl_command_end, after pg_egress_ddl_command_end (event triggers of one event fire in name
-- order): every published table the command touched, directly, through its partitions or
-- inheritance children, or through a type it uses (a table's row type included), is compared with
-- its last shape.
CREATE FUNCTION cdc_registry.on_ddl_values() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  cmd record;
  rel oid;
  target oid;
  kind "char";
  typ oid;
  done oid[] := '{}';
  created boolean;
BEGIN
  -- No early exit on a setting: any session can set a pg_egress.* placeholder, and a table's
  -- owner must not be able to switch this check off for its own DDL.
  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    BEGIN
      CONTINUE WHEN cmd.schema_name IS NULL
        OR cmd.schema_name IN ('cdc_registry', 'pg_catalog', 'information_schema')
        OR cmd.schema_name LIKE 'pg\_toast%' OR cmd.schema_name LIKE 'pg\_temp%';
      -- Commands that change no stored value (a new type is in no column yet).
      CONTINUE WHEN cmd.command_tag IN ('COMMENT', 'CREATE INDEX', 'GRANT', 'REVOKE', 'CREATE TYPE', 'CREATE DOMAIN');
      created := cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO');
      typ := NULL;
      rel := NULL;
      IF cmd.classid = 'pg_type'::regclass THEN
        typ := cmd.objid;
      ELSIF cmd.classid = 'pg_class'::regclass THEN
        SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = cmd.objid;
        IF kind = 'c' THEN
          SELECT c.reltype INTO typ FROM pg_class c WHERE c.oid = cmd.objid;
        ELSIF kind IN ('r', 'p') THEN
          rel := cmd.objid;
          -- A table's row type used as a column type elsewhere: its text there follows the
          -- table's columns. pg_depend's index makes the common case (no such column) one lookup.
          SELECT c.reltype INTO typ FROM pg_class c
           WHERE c.oid = rel AND EXISTS (
             SELECT 1 FROM pg_depend d JOIN pg_type t ON t.oid = c.reltype
              WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid IN (t.oid, t.typarray)
                AND d.classid IN ('pg_class'::regclass, 'pg_type'::regclass) AND d.deptype = 'n');
        END IF;
      END IF;
      FOR target IN
        SELECT t.relid FROM (
          SELECT rel WHERE rel IS NOT NULL
          UNION SELECT d FROM cdc_registry.inheritors(rel) d WHERE rel IS NOT NULL
          UNION SELECT a.relid FROM pg_partition_ancestors(rel) a WHERE rel IS NOT NULL
          UNION SELECT u FROM cdc_registry.tables_using_type(typ) u WHERE typ IS NOT NULL) t(relid)
      LOOP
        CONTINUE WHEN target = ANY (done);
        done := done || target;
        PERFORM cdc_registry.check_value_change(target, created AND target = cmd.objid);
      END LOOP;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pg-egress could not check % for changed values: %', cmd.object_identity, SQLERRM;
      -- Never absorbed silently: a published table the command was on is exported again.
      BEGIN
        IF rel IS NOT NULL AND cdc_registry.is_published(rel) THEN
          PERFORM cdc_registry.emit_ddl_reload(n.nspname, c.relname, rel, 'the value check failed: ' || SQLERRM)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
        END IF;
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pg-egress could not ask for a reload of %: %', cmd.object_identity, SQLERRM;
      END;
    END;
  END LOOP;
  -- Consumed: a later statement of this transaction starts from no rewrite.
  PERFORM set_config('pg_egress.rewritten', '', true);
END
$fn$;

-- Shapes of the tables that are published now (and, from the daemon's publication check, of
-- tables that joined without DDL).
CREATE FUNCTION cdc_registry.remember_shapes() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  INSERT INTO cdc_registry.table_shapes (relid, shape)
  SELECT pr.prrelid, cdc_registry.table_shape(pr.prrelid)
    FROM cdc_registry.settings s
    JOIN pg_publication p ON p.pubname = s.publication
    JOIN pg_publication_rel pr ON pr.prpubid = p.oid
   WHERE NOT EXISTS (SELECT 1 FROM cdc_registry.table_shapes t WHERE t.relid = pr.prrelid)
  ON CONFLICT (relid) DO NOTHING
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.remember_shapes() FROM PUBLIC;
DO $do$ BEGIN PERFORM cdc_registry.remember_shapes(); END $do$;

DO $do$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER pg_egress_values_ddl_end ON ddl_command_end
      EXECUTE FUNCTION cdc_registry.on_ddl_values();
    CREATE EVENT TRIGGER pg_egress_values_rewrite ON table_rewrite
      EXECUTE FUNCTION cdc_registry.on_table_rewrite();
  END IF;
END
$do$;
