-- Object storage as the archive of record (issue 17).
--
-- A data file (streaming, full_reload) is removed from output.dir once its S3 copy is verified,
-- its batch is anchored on every configured target, and it is older than output.retain
-- (src/anchor/retention.ts). The removal is recorded here: a file with local_removed_at set is in
-- S3 only, and the start-up check for missing files skips it. `recover` sets it for files it
-- registered from S3 that are not in output.dir.
ALTER TABLE cdc_registry.files ADD COLUMN local_removed_at timestamptz;
CREATE INDEX files_local_idx ON cdc_registry.files (slot_name, created_at)
  WHERE local_removed_at IS NULL AND file_type IN ('streaming', 'full_reload');

-- A volume lost with files whose upload was still pending (their only copy): recorded as a gap
-- and repaired by exporting the tables again. Added to whatever kinds the CHECK allows now.
DO $do$
DECLARE
  def text;
  kinds text[];
BEGIN
  SELECT pg_get_constraintdef(c.oid) INTO def FROM pg_constraint c
   WHERE c.conrelid = 'cdc_registry.gaps'::regclass AND c.contype = 'c' AND c.conname = 'gaps_kind_check';
  -- The CHECK reads `kind = ANY (ARRAY['a'::text, ...])` or, as 009 wrote it, `kind = ANY ('{a,b}'::text[])`.
  kinds := ARRAY(SELECT DISTINCT m[1] FROM regexp_matches(coalesce(def, ''), '''([a-z_]+)''', 'g') AS m)
        || ARRAY(SELECT DISTINCT unnest(string_to_array(m[1], ',')) FROM regexp_matches(coalesce(def, ''), '''\{([a-z_,]*)\}''', 'g') AS m);
  kinds := ARRAY(SELECT DISTINCT k FROM unnest(kinds || ARRAY['slot_lost', 'unpublished', 'publish_options', 'slot_moved', 'registry_behind', 'files_lost']) AS k ORDER BY k);
  IF def IS NOT NULL THEN
    ALTER TABLE cdc_registry.gaps DROP CONSTRAINT gaps_kind_check;
  END IF;
  EXECUTE format('ALTER TABLE cdc_registry.gaps ADD CONSTRAINT gaps_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END
$do$;
