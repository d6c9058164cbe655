-- DDL capture switched off under the daemon (issue: "never silently absorbed"): a superuser's
-- `ALTER EVENT TRIGGER … DISABLE` (or DROP) of one of pg-egress's event triggers means a
-- value-changing DDL in the meantime changed rows with no row change in the WAL and no reload.
-- The daemon's periodic check (src/source/ddl-capture.ts) records it as a gap and repairs it by
-- exporting the tables again. Added to whatever kinds the CHECK allows now (as in 012).
DO $do$
DECLARE
  def text;
  kinds text[];
BEGIN
  SELECT pg_get_constraintdef(c.oid) INTO def FROM pg_constraint c
   WHERE c.conrelid = 'cdc_registry.gaps'::regclass AND c.contype = 'c' AND c.conname = 'gaps_kind_check';
  kinds := ARRAY(SELECT DISTINCT m[1] FROM regexp_matches(coalesce(def, ''), '''([a-z_]+)''', 'g') AS m)
        || ARRAY(SELECT DISTINCT unnest(string_to_array(m[1], ',')) FROM regexp_matches(coalesce(def, ''), '''\{([a-z_,]*)\}''', 'g') AS m);
  kinds := ARRAY(SELECT DISTINCT k FROM unnest(kinds || ARRAY['slot_lost', 'unpublished', 'publish_options', 'slot_moved', 'registry_behind', 'files_lost', 'ddl_capture']) AS k ORDER BY k);
  IF def IS NOT NULL THEN
    ALTER TABLE cdc_registry.gaps DROP CONSTRAINT gaps_kind_check;
  END IF;
  EXECUTE format('ALTER TABLE cdc_registry.gaps ADD CONSTRAINT gaps_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END
$do$;
