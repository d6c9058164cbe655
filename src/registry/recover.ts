/** Registry side of `pg-egress recover` (src/archive/recover.ts). */
import type { Db } from '../db/tx.js';

/** Batches the registry holds for this slot (0 when cdc_registry is missing). */
export async function registeredBatchCount(db: Db, slot: string): Promise<number> {
  const { rows } = await db.query<{ ok: string }>(`SELECT (to_regclass('cdc_registry.batches') IS NOT NULL)::text AS ok`);
  if (rows[0].ok !== 'true') return 0;
  const { rows: n } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM "cdc_registry"."batches" WHERE "slot_name" = $1`, [slot]);
  return Number(n[0].n);
}

/**
 * Recovered from the S3 prefix the daemon anchors to: every file was read from there and matched
 * its manifest, so the S3 anchors of the recovered batches are done (the worker would otherwise
 * upload from output.dir, which may not hold them).
 */
export async function markS3AnchorsRecovered(db: Db, slot: string, from: string): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE "cdc_registry"."anchor_queue" SET "state" = 'done', "reference" = $2, "last_error" = NULL, "updated_at" = now()
     WHERE "slot_name" = $1 AND "target" = 's3' AND "state" = 'pending'`,
    [slot, JSON.stringify({ recovered_from: from })],
  );
  return rowCount ?? 0;
}
