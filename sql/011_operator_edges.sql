-- Operator edges (issue 14 item 8).
--
-- An anchor whose target is no longer configured (anchors.s3 or anchors.near removed from cdc.yml)
-- can never run: at start the daemon marks its pending and failed entries `skipped` (with a
-- warning; status and metrics show them), and puts them back to `pending` when the target is
-- configured again. https://www.postgresql.org/docs/15/ddl-alter.html#DDL-ALTER-REMOVING-A-CONSTRAINT
ALTER TABLE cdc_registry.anchor_queue DROP CONSTRAINT IF EXISTS anchor_queue_state_check;
ALTER TABLE cdc_registry.anchor_queue ADD CONSTRAINT anchor_queue_state_check
  CHECK (state IN ('pending', 'done', 'failed', 'skipped'));

-- The SELECT grants `init --url` gave the daemon's role, so that `uninstall` revokes exactly
-- those (with the tables the publication holds and the slot ever streamed or exported: the
-- publication function grants on each table that joins).
CREATE TABLE cdc_registry.granted_select (
  relid       oid NOT NULL,
  role_name   text NOT NULL,
  granted_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relid, role_name)
);
