-- Failover and out-of-band slot operations (issue 13, items 3 and 4).
--
-- Gap kinds for a slot that moved without pg-egress: its confirmed_flush_lsn is past everything
-- pg-egress registered or confirmed (pg_replication_slot_advance by a DBA, the slot dropped and
-- created again), and a registry that is behind what pg-egress had registered (restored from a
-- backup) while the files in between are not on disk. The kinds are added to whatever the CHECK
-- allows at this point, so migrations of other features that add kinds of their own keep theirs.
DO $do$
DECLARE
  def text;
  kinds text[];
BEGIN
  SELECT pg_get_constraintdef(c.oid) INTO def FROM pg_constraint c
   WHERE c.conrelid = 'cdc_registry.gaps'::regclass AND c.contype = 'c' AND c.conname = 'gaps_kind_check';
  kinds := ARRAY(SELECT DISTINCT m[1] FROM regexp_matches(coalesce(def, ''), '''([a-z_]+)''', 'g') AS m);
  kinds := ARRAY(SELECT DISTINCT k FROM unnest(kinds || ARRAY['slot_lost', 'unpublished', 'publish_options', 'slot_moved', 'registry_behind']) AS k ORDER BY k);
  IF def IS NOT NULL THEN
    ALTER TABLE cdc_registry.gaps DROP CONSTRAINT gaps_kind_check;
  END IF;
  EXECUTE format('ALTER TABLE cdc_registry.gaps ADD CONSTRAINT gaps_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END
$do$;

-- Whether a daemon that records its own confirmations (output.dir/_confirmed.json) has run for
-- this slot: from then on, a slot confirmed past what pg-egress registered or confirmed is a gap.
-- Before it (an upgrade), the start-up check has nothing to compare with and only begins.
ALTER TABLE cdc_registry.slot_state ADD COLUMN confirm_tracking boolean NOT NULL DEFAULT false;
