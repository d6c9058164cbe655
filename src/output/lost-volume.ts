/**
 * At start: registered files that are not in output.dir (issue 17 item 3). With S3 as the archive
 * of record this is expected after a lost volume (a pod rescheduled onto a new PVC) and after a
 * crash between a retention unlink and its record:
 *   - a file whose batch's S3 upload is done is in S3, verified: it is recorded as not local and
 *     the daemon goes on (no exit, nothing exported again);
 *   - a data file whose upload was still pending had its only copy on the lost volume: a
 *     `files_lost` gap is recorded for its table and the table is exported again (the gap closes
 *     when that export is registered), so the archive never differs from the source silently.
 * Without anchors.s3 a missing file stays what it was: a warning (see pg-egress status).
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Registry } from '../registry/registry.js';
import { RetentionRegistry } from '../registry/retention.js';
import { ReloadRegistry } from '../registry/reloads.js';
import type { Db } from '../db/tx.js';
import { missingFiles } from './sweep.js';

export async function accountForMissingFiles(cfg: Config, db: Db, registry: Registry, log: Logger): Promise<void> {
  const ret = new RetentionRegistry(db, cfg.slot);
  const missing = await missingFiles(cfg.output.dir, await ret.localPaths());
  if (!missing.length) return;
  if (!cfg.anchors.s3) {
    log.warn({ files: missing.slice(0, 20), missing: missing.length }, 'registered files are missing from output.dir (see pg-egress status)');
    return;
  }
  const { uploaded, notUploaded } = await ret.splitByUploaded(missing);
  await ret.markNotLocal(uploaded);
  if (uploaded.length) log.info({ files: uploaded.length }, 'registered files missing from output.dir are in S3 (uploaded and verified): recorded as S3 only');
  const lost = notUploaded.filter((f) => f.path.endsWith('.csv.gz') && f.schema !== null && f.table !== null);
  if (notUploaded.length) log.warn({ files: notUploaded.slice(0, 20).map((f) => f.path), missing: notUploaded.length }, 'registered files are missing from output.dir and their upload to S3 was not done: their only copy is lost');
  const tables = new Map<string, { schema: string; table: string; paths: string[] }>();
  for (const f of lost) {
    const k = `${f.schema}\u0000${f.table}`;
    const t = tables.get(k) ?? { schema: f.schema!, table: f.table!, paths: [] };
    t.paths.push(f.path);
    tables.set(k, t);
  }
  const reloads = new ReloadRegistry(db, cfg.slot);
  for (const t of tables.values()) {
    const detail = `${t.paths.length} data file(s) of ${t.schema}.${t.table} were lost from output.dir before their upload to S3 (e.g. ${t.paths[0]}); the table is exported again`;
    const gapId = await registry.recordGap({ kind: 'files_lost', schema: t.schema, table: t.table, lsnFrom: null, lsnTo: null, detail });
    await reloads.request({ schema: t.schema, table: t.table, relid: null, reason: 'gap', requestedLsn: null, restoreComment: false, previousComment: null, requestId: null, gapId });
    await ret.markNotLocal(t.paths);
    log.error({ gap: 'files_lost', id: gapId, table: `${t.schema}.${t.table}` }, `data gap: ${detail}`);
  }
}
