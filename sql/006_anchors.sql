-- The anchor queue (SPEC §9): one entry per batch and target, inserted in the transaction that
-- registers the batch, so an anchor is never lost and never precedes its files.
ALTER TABLE cdc_registry.anchor_queue ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX anchor_queue_pending_idx ON cdc_registry.anchor_queue (slot_name, next_attempt_at) WHERE state = 'pending';
