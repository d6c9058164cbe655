/**
 * The anchor queue in the registry (SPEC §9). Entries are inserted with their batch's
 * registration (`enqueueAnchors`, inside that transaction); the anchor worker claims one at a
 * time with FOR UPDATE SKIP LOCKED on a connection of its own, S3 before NEAR for the same batch
 * (NEAR's metadata references the uploaded batch index), and records the outcome.
 */
import type pg from 'pg';
import type { Db } from '../db/tx.js';
import type { Config } from '../config/index.js';

/** The configured targets, in the order they run for a batch. */
export const anchorTargets = (cfg: Config): AnchorTarget[] => [...(cfg.anchors.s3 ? (['s3'] as const) : []), ...(cfg.anchors.near ? (['near'] as const) : [])];

export type AnchorTarget = 's3' | 'near';

export interface AnchorEntry {
  id: number;
  batchId: string;
  target: AnchorTarget;
  attempts: number;
}

export async function enqueueAnchors(c: pg.ClientBase, slot: string, batchId: string, targets: readonly AnchorTarget[]): Promise<void> {
  if (!targets.length) return;
  await c.query(
    `INSERT INTO "cdc_registry"."anchor_queue" ("slot_name", "batch_id", "target") SELECT $1, $2, t FROM unnest($3::text[]) AS t
     ON CONFLICT ("slot_name", "batch_id", "target") DO NOTHING`,
    [slot, batchId, targets],
  );
}

/** A claim is a lease: an entry whose worker died is claimed again after it. */
const LEASE = `interval '10 minutes'`;

export class AnchorQueue {
  constructor(
    readonly db: Db,
    readonly slot: string,
  ) {}

  /** At start: leases of a dead process end now (this one holds the daemon lock). */
  async releaseLeases(): Promise<void> {
    await this.db.query(
      `UPDATE "cdc_registry"."anchor_queue" SET "next_attempt_at" = now() WHERE "slot_name" = $1 AND "state" = 'pending' AND "next_attempt_at" > now()`,
      [this.slot],
    );
  }

  /** The next due entry; NEAR only once the batch's S3 upload (if any) is done. */
  async claim(): Promise<AnchorEntry | null> {
    const { rows } = await this.db.query<{ id: string; batch_id: string; target: AnchorTarget; attempts: number }>(
      `UPDATE "cdc_registry"."anchor_queue" SET "attempts" = "attempts" + 1, "next_attempt_at" = now() + ${LEASE}, "updated_at" = now()
       WHERE "id" = (
         SELECT a."id" FROM "cdc_registry"."anchor_queue" a
         WHERE a."slot_name" = $1 AND a."state" = 'pending' AND a."next_attempt_at" <= now()
           AND (a."target" = 's3' OR NOT EXISTS (
             SELECT 1 FROM "cdc_registry"."anchor_queue" s WHERE s."slot_name" = a."slot_name" AND s."batch_id" = a."batch_id"
               AND s."target" = 's3' AND s."state" NOT IN ('done', 'skipped')))
         ORDER BY a."id" FOR UPDATE SKIP LOCKED LIMIT 1)
       RETURNING "id"::text, "batch_id", "target", "attempts"`,
      [this.slot],
    );
    return rows.length
      ? { id: Number(rows[0].id), batchId: rows[0].batch_id, target: rows[0].target, attempts: Number(rows[0].attempts) }
      : null;
  }

  async done(id: number, reference: object): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."anchor_queue" SET "state" = 'done', "reference" = $2, "last_error" = NULL, "updated_at" = now() WHERE "id" = $1`, [id, JSON.stringify(reference)]);
  }

  /**
   * A target that failed is back (an entry that had failed is done): the entries of that target
   * waiting out their backoff are due now, so a long outage does not leave the backlog waiting up
   * to the longest backoff after the target returns. One anchor loop per daemon claims, so no
   * other entry is leased meanwhile.
   */
  async resumeWaiting(target: AnchorTarget): Promise<void> {
    await this.db.query(
      `UPDATE "cdc_registry"."anchor_queue" SET "next_attempt_at" = now()
       WHERE "slot_name" = $1 AND "target" = $2 AND "state" = 'pending' AND "next_attempt_at" > now() AND "last_error" IS NOT NULL`,
      [this.slot, target],
    );
  }

  /** A retryable failure: due again after `delayMs`. */
  async retry(id: number, error: string, delayMs: number): Promise<void> {
    await this.db.query(
      `UPDATE "cdc_registry"."anchor_queue" SET "last_error" = $2, "next_attempt_at" = now() + make_interval(secs => $3::float8 / 1000), "updated_at" = now() WHERE "id" = $1`,
      [id, error, delayMs],
    );
  }

  /**
   * At start: entries of a target that is no longer configured can never run, so pending and
   * failed ones become `skipped` (not pending for ever); skipped ones of a target configured
   * again become pending. Returns the counts per target, for one warning each.
   */
  async reconcileTargets(configured: readonly AnchorTarget[]): Promise<{ skipped: Map<string, number>; resumed: Map<string, number> }> {
    const count = (rows: { target: string; n: string }[]) => new Map(rows.map((r) => [r.target, Number(r.n)]));
    const { rows: skipped } = await this.db.query<{ target: string; n: string }>(
      `WITH s AS (
         UPDATE "cdc_registry"."anchor_queue" SET "state" = 'skipped', "updated_at" = now(),
                "last_error" = 'anchors.' || "target" || ' is not configured' || coalesce(' (was ' || "state" || ': ' || "last_error" || ')', '')
         WHERE "slot_name" = $1 AND "state" IN ('pending', 'failed') AND NOT ("target" = ANY($2::text[])) RETURNING "target")
       SELECT "target", count(*)::text AS n FROM s GROUP BY 1`,
      [this.slot, configured],
    );
    const { rows: resumed } = await this.db.query<{ target: string; n: string }>(
      `WITH s AS (
         UPDATE "cdc_registry"."anchor_queue" SET "state" = 'pending', "next_attempt_at" = now(), "attempts" = 0, "last_error" = NULL, "updated_at" = now()
         WHERE "slot_name" = $1 AND "state" = 'skipped' AND "target" = ANY($2::text[]) RETURNING "target")
       SELECT "target", count(*)::text AS n FROM s GROUP BY 1`,
      [this.slot, configured],
    );
    return { skipped: count(skipped), resumed: count(resumed) };
  }

  /** A failure only an operator can fix (a conflicting token, a refused bucket): state failed. */
  async fail(id: number, error: string): Promise<void> {
    await this.db.query(`UPDATE "cdc_registry"."anchor_queue" SET "state" = 'failed', "last_error" = $2, "updated_at" = now() WHERE "id" = $1`, [id, error]);
  }

  /** Everything the worker needs about a batch: its files and its index. */
  async batchFiles(batchId: string): Promise<{ path: string; bytes: number; sha256: string; type: string }[]> {
    const { rows } = await this.db.query<{ path: string; bytes: string; sha256: string; file_type: string }>(
      `SELECT "path", "bytes"::text, "sha256", "file_type" FROM "cdc_registry"."files" WHERE "slot_name" = $1 AND "batch_id" = $2 ORDER BY "id"`,
      [this.slot, batchId],
    );
    return rows.map((r) => ({ path: r.path, bytes: Number(r.bytes), sha256: r.sha256, type: r.file_type }));
  }

  async batch(batchId: string): Promise<{
    indexPath: string;
    indexSha256: string;
    merkleRoot: string | null;
    lsnStart: string | null;
    lsnEnd: string;
    kind: string;
  } | null> {
    const { rows } = await this.db.query<{
      index_path: string;
      index_sha256: string;
      merkle_root: string | null;
      lsn_start: string | null;
      lsn_end: string;
      kind: string;
    }>(
      `SELECT "index_path", "index_sha256", "merkle_root", "lsn_start"::text, "lsn_end"::text, "kind" FROM "cdc_registry"."batches" WHERE "slot_name" = $1 AND "batch_id" = $2`,
      [this.slot, batchId],
    );
    const r = rows[0];
    return r
      ? {
        indexPath: r.index_path,
        indexSha256: r.index_sha256,
        merkleRoot: r.merkle_root,
        lsnStart: r.lsn_start,
        lsnEnd: r.lsn_end,
        kind: r.kind,
      }
      : null;
  }

  /** For status and metrics: per target, pending and failed counts, the oldest pending age, the last error. */
  async summary(): Promise<{
    target: string;
    pending: number;
    failed: number;
    done: number;
    skipped: number;
    oldest_pending_s: number | null;
    last_error: string | null;
  }[]> {
    const { rows } = await this.db.query<{
      target: string;
      pending: string;
      failed: string;
      done: string;
      skipped: string;
      oldest: string | null;
      last_error: string | null;
    }>(
      `SELECT "target", count(*) FILTER (WHERE "state" = 'pending')::text AS pending, count(*) FILTER (WHERE "state" = 'failed')::text AS failed,
              count(*) FILTER (WHERE "state" = 'done')::text AS done, count(*) FILTER (WHERE "state" = 'skipped')::text AS skipped,
              extract(epoch FROM now() - min("created_at") FILTER (WHERE "state" = 'pending'))::bigint::text AS oldest,
              (array_agg("last_error" ORDER BY "updated_at" DESC) FILTER (WHERE "last_error" IS NOT NULL AND "state" <> 'done'))[1] AS last_error
       FROM "cdc_registry"."anchor_queue" WHERE "slot_name" = $1 GROUP BY "target" ORDER BY "target"`,
      [this.slot],
    );
    return rows.map((r) => ({
      target: r.target,
      pending: Number(r.pending),
      failed: Number(r.failed),
      done: Number(r.done),
      skipped: Number(r.skipped),
      oldest_pending_s: r.oldest === null ? null : Number(r.oldest),
      last_error: r.last_error,
    }));
  }
}

/** Files of batches anchored to S3, for `verify-anchors`: path, size and sha256 as registered. */
export async function s3AnchoredFiles(db: Db, slot: string): Promise<{ path: string; bytes: string; sha256: string }[]> {
  const { rows } = await db.query<{ path: string; bytes: string; sha256: string }>(
    `SELECT f.path, f.bytes::text, f.sha256 FROM cdc_registry.files f JOIN cdc_registry.anchor_queue a
       ON a.slot_name = f.slot_name AND a.batch_id = f.batch_id AND a.target = 's3' AND a.state = 'done'
     WHERE f.slot_name = $1 ORDER BY f.id`,
    [slot],
  );
  return rows;
}

/** Files that output.retain removed locally (their S3 copy is the only one); none before migration 012. */
export async function s3OnlyPaths(db: Db, slot: string): Promise<Set<string>> {
  const removed = await db
    .query<{ path: string }>(`SELECT path FROM cdc_registry.files WHERE slot_name = $1 AND local_removed_at IS NOT NULL`, [slot])
    .catch(() => ({ rows: [] as { path: string }[] }));
  return new Set(removed.rows.map((r) => r.path));
}

/** Batches anchored to NEAR, in chain order, for `verify-anchors`. */
export async function nearAnchoredBatches(db: Db, slot: string): Promise<{ batch_id: string; index_path: string }[]> {
  const { rows } = await db.query<{ batch_id: string; index_path: string }>(
    `SELECT b.batch_id, b.index_path FROM cdc_registry.batches b JOIN cdc_registry.anchor_queue a
       ON a.slot_name = b.slot_name AND a.batch_id = b.batch_id AND a.target = 'near' AND a.state = 'done'
     WHERE b.slot_name = $1 ORDER BY b.chain_seq`,
    [slot],
  );
  return rows;
}

/** The done anchors of one batch with their references and the batch index's sha256 (proof files). */
export async function batchAnchorReferences(
  db: Db,
  slot: string,
  batchId: string,
): Promise<{ target: string; reference: Record<string, unknown> | string; index_sha256: string }[]> {
  const { rows } = await db.query<{ target: string; reference: Record<string, unknown> | string; index_sha256: string }>(
    `SELECT a.target, a.reference, b.index_sha256 FROM cdc_registry.anchor_queue a
       JOIN cdc_registry.batches b ON b.slot_name = a.slot_name AND b.batch_id = a.batch_id
     WHERE a.slot_name = $1 AND a.batch_id = $2 AND a.state = 'done'`,
    [slot, batchId],
  );
  return rows;
}
