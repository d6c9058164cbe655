-- DDL capture switched off under the daemon: a superuser's `ALTER EVENT TRIGGER … DISABLE` (or
-- DROP) of pg-egress's value-changing DDL triggers means a DDL in the meantime changed rows with no
-- row change in the WAL and no reload. The daemon's periodic check (src/source/ddl-capture.ts)
-- records it as a gap and repairs it by exporting the tables again. Migrations run in order, so
-- the CHECK is the one 012 wrote: replaced with the same kinds plus this one.
ALTER TABLE cdc_registry.gaps DROP CONSTRAINT gaps_kind_check;
ALTER TABLE cdc_registry.gaps ADD CONSTRAINT gaps_kind_check CHECK (kind = ANY (ARRAY[
  'ddl_capture', 'files_lost', 'publish_options', 'registry_behind', 'slot_lost', 'slot_moved', 'unpublished']));
