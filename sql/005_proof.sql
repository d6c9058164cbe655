-- Provable exports (SPEC §9): the batches form a hash chain. Each batch index names the batch
-- registered before it; chain_seq is the registration order, and no two batches may name the
-- same predecessor (a fork would mean two writers, or a replaced batch).
ALTER TABLE cdc_registry.batches ADD COLUMN chain_seq bigserial;
ALTER TABLE cdc_registry.batches ADD COLUMN prev_batch_id text;
CREATE UNIQUE INDEX batches_prev_idx ON cdc_registry.batches (slot_name, prev_batch_id);
