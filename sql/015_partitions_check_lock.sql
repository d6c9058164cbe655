-- The daemon's membership check (sync_all_partitions, every publication_check) against the event
-- triggers of partition DDL. sync_partitions reads a root's leaves, then the members last recorded,
-- in two statements; a DDL committed between the two (its trigger recording the change) made the
-- check record a change that never happened, or lose one (test/integration/partitions-race.test.ts).
--
-- So the two take an advisory lock per publication: the triggers shared (they never wait for one
-- another, and DDL on one root already waits for DDL on the same root), the check exclusive and
-- only if it is free: a DDL whose trigger ran is not committed yet, and the check returns -1 (busy:
-- the daemon skips this round, or at start-up tries again). While the check holds it, no trigger
-- can record: a DDL waits for the check's short transaction, which waits on no table lock for
-- longer than its lock_timeout (src/registry/partitions.ts).
-- https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
ALTER FUNCTION cdc_registry.sync_partitions(text, oid[], text, oid[]) RENAME TO sync_partitions_unlocked;

CREATE FUNCTION cdc_registry.sync_partitions(pub text, roots oid[], tag text, created oid[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  k bigint := hashtextextended('pg-egress:partitions:' || pub, 0);
BEGIN
  IF tag IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock_shared(k);
  ELSIF NOT pg_try_advisory_xact_lock(k) THEN
    RETURN -1;
  END IF;
  RETURN cdc_registry.sync_partitions_unlocked(pub, roots, tag, created);
END
$fn$;
REVOKE ALL ON FUNCTION cdc_registry.sync_partitions(text, oid[], text, oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_registry.sync_partitions_unlocked(text, oid[], text, oid[]) FROM PUBLIC;
