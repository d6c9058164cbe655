/**
 * `verify --config`: besides the local files, the anchors — every registered file's S3 copy (size
 * and sha256 of what the bucket holds) and each batch's NEAR token (its reference_hash is the
 * sha256 of the local batch index, its extra the batch root) — and, with `--proof`, the anchor
 * references a proof carries. Reads the registry for what was anchored; checks the targets live.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { createPool } from '../db/tx.js';
import { sourceError } from '../db/connect.js';
import { nearTokenId } from '../anchor/near-token.js';
import { batchAnchorReferences, nearAnchoredBatches, s3AnchoredFiles, s3OnlyPaths } from '../registry/anchors.js';
import type { ProofAnchors } from '../proof/proof-file.js';

// The AWS SDK and near-api-js load only when a check needs them (they slow every CLI start).
const loadS3 = () => import('../anchor/s3.js').then((m) => m.createS3Target);
const loadNear = () => import('../anchor/near.js').then((m) => m.createNearTarget);

export interface AnchorCheck {
  s3Objects: number;
  nearTokens: number;
  problems: string[];
  /** Registered files removed locally by output.retain (or recovered from S3 only): checked in S3 above. */
  s3Only: Set<string>;
}

export async function verifyAnchors(cfg: Config): Promise<AnchorCheck> {
  const out: AnchorCheck = { s3Objects: 0, nearTokens: 0, problems: [], s3Only: new Set() };
  const pool = createPool(cfg.source, 1);
  try {
    const { rows: sys } = await pool.query<{ sysid: string }>(`SELECT system_identifier::text AS sysid FROM pg_control_system()`);
    if (cfg.anchors.s3) {
      const s3 = (await loadS3())(cfg.anchors.s3);
      try {
        const rows = await s3AnchoredFiles(pool, cfg.slot);
        out.s3Only = await s3OnlyPaths(pool, cfg.slot);
        for (const r of rows) {
          if (!(await s3.check(r.path, { bytes: Number(r.bytes), sha256: r.sha256 }))) out.problems.push(`s3://${cfg.anchors.s3.bucket}/${s3.key(r.path)}: missing or not byte-identical to ${r.path}`);
          out.s3Objects++;
        }
      } finally {
        s3.close();
      }
    }
    if (cfg.anchors.near) {
      const near = await (await loadNear())(cfg.anchors.near);
      const rows = await nearAnchoredBatches(pool, cfg.slot);
      for (const r of rows) {
        const token = await near.token(nearTokenId(sys[0].sysid, cfg.slot, r.batch_id));
        const bytes = await fsp.readFile(path.join(cfg.output.dir, r.index_path)).catch(() => null);
        const sha = bytes ? createHash('sha256').update(bytes).digest('base64') : null;
        if (!token?.metadata) out.problems.push(`NEAR token of batch ${r.batch_id}: not found on ${cfg.anchors.near.contractId}`);
        else if (token.metadata.reference_hash !== sha) out.problems.push(`NEAR token of batch ${r.batch_id}: reference_hash does not match ${r.index_path} (the batch index was changed)`);
        out.nearTokens++;
      }
    }
    return out;
  } catch (e) {
    throw sourceError(e, cfg.source, 'read the anchors');
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/**
 * The anchor references of a batch, for a proof file: the S3 keys of the file, its manifest and
 * the batch index, and the NEAR token with the reference_hash it was minted with (the worker mints
 * only an index whose bytes match the registered sha256, so older references without it get that).
 */
export async function anchorReferences(cfg: Config, batchId: string, fileRel: string, manifestRel: string): Promise<ProofAnchors | null> {
  const pool = createPool(cfg.source, 1);
  try {
    const rows = await batchAnchorReferences(pool, cfg.slot, batchId);
    if (!rows.length) return null;
    const out: ProofAnchors = {};
    for (const r of rows) {
      const ref = typeof r.reference === 'string' ? (JSON.parse(r.reference) as Record<string, unknown>) : r.reference;
      if (r.target === 's3') {
        // The prefix is what the index key holds before the index's relative path.
        const indexKey = String(ref.index_key);
        const indexRel = `_batches/${batchId}.json`;
        const prefix = indexKey.endsWith(indexRel) ? indexKey.slice(0, -indexRel.length) : '';
        const key = (rel: string) => prefix + rel;
        out.s3 = { bucket: String(ref.bucket), file_key: key(fileRel), manifest_key: key(manifestRel), index_key: indexKey };
      } else {
        out.near = {
          contract: String(ref.contract),
          token_id: String(ref.token_id),
          tx_hash: typeof ref.tx_hash === 'string' ? ref.tx_hash : null,
          reference: String(ref.reference),
          reference_hash: typeof ref.reference_hash === 'string' ? ref.reference_hash : Buffer.from(r.index_sha256, 'hex').toString('base64'),
        };
      }
    }
    return out;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
