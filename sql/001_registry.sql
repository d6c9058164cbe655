-- pg-egress registry (SPEC §7). Applied once, in order, under an advisory lock (src/registry/migrate.ts).
-- The registry lives in the source database so that registering files and the new slot LSN is one
-- transaction on the same server the slot belongs to.

CREATE TABLE cdc_registry.slot_state (
  slot_name       text PRIMARY KEY,
  publication     text NOT NULL,
  registered_lsn  pg_lsn NOT NULL DEFAULT '0/0',
  last_batch      text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Capture settings the event trigger needs: which new tables join the publication.
-- Patterns are anchored POSIX regular expressions over schema and table names.
CREATE TABLE cdc_registry.settings (
  publication     text PRIMARY KEY,
  include         jsonb NOT NULL DEFAULT '[]',   -- [{"schema": "^public$", "table": "^.*$"}]
  exclude         jsonb NOT NULL DEFAULT '[]',
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cdc_registry.tables (
  slot_name       text NOT NULL,
  schema_name     text NOT NULL,
  table_name      text NOT NULL,
  relid           oid,
  mode            text NOT NULL DEFAULT 'streaming'
                  CHECK (mode IN ('streaming', 'pending_reload', 'reloading')),
  last_window     text,
  dropped_at      timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot_name, schema_name, table_name)
);

CREATE TABLE cdc_registry.batches (
  slot_name       text NOT NULL,
  batch_id        text NOT NULL,         -- flush name, e.g. 20261122T100500Z-001
  window_start    timestamptz NOT NULL,
  lsn_start       pg_lsn,
  lsn_end         pg_lsn NOT NULL,        -- registered LSN after this flush
  files           integer NOT NULL,
  rows            bigint NOT NULL,
  index_path      text NOT NULL,
  index_sha256    text NOT NULL,
  merkle_root     text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot_name, batch_id)
);

CREATE TABLE cdc_registry.files (
  id              bigserial PRIMARY KEY,
  slot_name       text NOT NULL,
  path            text NOT NULL,          -- relative to output.dir
  file_type       text NOT NULL
                  CHECK (file_type IN ('streaming', 'full_reload', 'schema', 'ddl', 'manifest', 'batch')),
  schema_name     text,
  table_name      text,
  batch_id        text NOT NULL,
  window_start    timestamptz NOT NULL,
  lsn_start       pg_lsn,
  lsn_end         pg_lsn,
  rows            bigint,
  bytes           bigint NOT NULL,
  raw_bytes       bigint,
  sha256          text NOT NULL,
  merkle_root     text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (slot_name, path)
);
CREATE INDEX files_table_idx ON cdc_registry.files (schema_name, table_name, window_start);

CREATE TABLE cdc_registry.reloads (
  id              bigserial PRIMARY KEY,
  slot_name       text NOT NULL,
  schema_name     text NOT NULL,
  table_name      text NOT NULL,
  state           text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
  requested_lsn   pg_lsn,
  snapshot_lsn    pg_lsn,
  rows            bigint,
  error           text,
  requested_at    timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  finished_at     timestamptz
);

CREATE TABLE cdc_registry.ddl_history (
  id              bigserial PRIMARY KEY,
  happened_at     timestamptz NOT NULL DEFAULT now(),
  txid            bigint NOT NULL DEFAULT txid_current(),
  username        text NOT NULL DEFAULT current_user,
  command_tag     text NOT NULL,
  object_type     text,
  schema_name     text,
  table_name      text,
  relid           oid,
  command         text,
  definition      jsonb
);

CREATE TABLE cdc_registry.anchor_queue (
  id              bigserial PRIMARY KEY,
  slot_name       text NOT NULL,
  batch_id        text NOT NULL,
  target          text NOT NULL CHECK (target IN ('s3', 'near')),
  state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  reference       jsonb,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (slot_name, batch_id, target)
);
