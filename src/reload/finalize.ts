/**
 * Places one reload operation's files and registers them (SPEC §3, §6): the parts go into a
 * window folder of the table (the window of the snapshot, named from the batch sequence shared
 * with flushes), with schema.yml, manifest.json (entries `type: full_reload`, `lsn: {start: S,
 * end: S}`) and a batch index; the intent is recorded before the first rename, and the files,
 * the batch and the operation's end are one registry transaction. It runs only after every
 * export worker has ended its transaction (reloader.ts): nothing here holds or waits for a lock on
 * the application's tables (the marker's comment is put back afterwards, by the reloader).
 */
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Lsn } from '../lsn.js';
import { formatLsn, lsnHex } from '../lsn.js';
import { alignWindow, BATCHES_DIR, FILES, flushName, reloadPartName, tableFolder, windowName } from '../output/layout.js';
import { ensureDir, fsyncDir, renameDurable, writeFileAtomic } from '../output/atomic.js';
import { batchJson, manifestJson, schemaYml, type ManifestFile } from '../output/documents.js';
import { insertFiles, type FileRecord } from '../registry/registry.js';
import type { ReloadOp } from '../registry/reloads.js';
import { withTransaction } from '../registry/tx.js';
import { rootOf } from '../proof/merkle.js';
import { anchorTargets, enqueueAnchors } from '../registry/anchors.js';
import type { TableDef } from '../source/setup.js';
import type { ReloaderDeps } from './reloader.js';
import type { ChunkResult } from './workers.js';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

const IDENTITY: Record<string, 'default' | 'full' | 'index' | 'nothing'> = { d: 'default', f: 'full', i: 'index', n: 'nothing' };

export async function finalizeReload(
  d: ReloaderDeps,
  op: ReloadOp,
  def: TableDef,
  columns: readonly string[],
  relid: number,
  parts: ChunkResult[],
  lsn: Lsn,
  takenAt: number,
  workers: number,
  /** When this attempt of the export began (claimed), for the `ms` of the `reloaded` line. */
  startedAt: number,
): Promise<void> {
  const { cfg, registry, reloads, db, log, server } = d;
  const win = alignWindow(takenAt, cfg.batch.intervalMs);
  const batchId = flushName(win, await registry.nextBatchSeq(windowName(win)));
  const folder = tableFolder(op.schema, op.table);
  const rel = `${folder}/${batchId}`;
  const names = parts.length === 1 ? [FILES.fullReload] : parts.map((_, i) => reloadPartName(i));
  const indexPath = `${BATCHES_DIR}/${batchId}.json`;
  await registry.recordIntent(batchId, [...names.map((n) => `${rel}/${n}`), `${rel}/${FILES.schema}`, `${rel}/${FILES.manifest}`, indexPath]);

  const dir = path.join(cfg.output.dir, folder, batchId);
  await ensureDir(dir, cfg.output.dirMode);
  const files: FileRecord[] = [];
  const mf: ManifestFile[] = [];
  let rows = 0;
  let rawBytes = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    await renameDurable(p.tmpPath, path.join(dir, names[i]));
    rows += p.rows;
    rawBytes += p.stats.rawBytes;
    const root = p.merkle.root.toString('hex');
    mf.push({ name: names[i], type: 'full_reload', rows: p.rows, bytes: p.stats.bytes, rawBytes: p.stats.rawBytes, sha256: p.stats.sha256, lsnStart: lsn, lsnEnd: lsn, merkle: { treeSize: p.merkle.treeSize, root, blocks: p.merkle.blocks.map((b) => b.toString('hex')) } });
    files.push({ path: `${rel}/${names[i]}`, type: 'full_reload', schema: op.schema, table: op.table, lsnStart: lsn, lsnEnd: lsn, rows: p.rows, bytes: p.stats.bytes, rawBytes: p.stats.rawBytes, sha256: p.stats.sha256, merkleRoot: root });
  }
  const byName = new Map(def.columns.map((c) => [c.name, c]));
  const schemaText = schemaYml({
    schema: op.schema,
    table: op.table,
    oid: relid,
    replicaIdentity: IDENTITY[def.replica_identity] ?? 'default',
    primaryKey: def.primary_key,
    columns: columns.map((n) => {
      const c = byName.get(n)!;
      return { name: n, type: c.type, typeOid: c.type_oid, nullable: c.nullable };
    }),
    generatedColumns: def.columns.filter((c) => c.generated).map((c) => c.name),
    source: { database: server.database, serverVersion: server.serverVersion, systemIdentifier: server.systemIdentifier },
    lsnStart: lsn,
    lsnEnd: lsn,
    generatedAt: new Date(takenAt),
  });
  const schemaSha = sha256(schemaText);
  await writeFileAtomic(path.join(dir, FILES.schema), schemaText, cfg.output.fileMode);
  const small = (name: string, type: FileRecord['type'], text: string, sha: string): FileRecord => ({
    path: `${rel}/${name}`,
    type,
    schema: op.schema,
    table: op.table,
    lsnStart: null,
    lsnEnd: null,
    rows: null,
    bytes: Buffer.byteLength(text),
    rawBytes: null,
    sha256: sha,
    merkleRoot: null,
  });
  files.push(small(FILES.schema, 'schema', schemaText, schemaSha));
  const windowStart = new Date(win);
  const manifestText = manifestJson({ schema: op.schema, table: op.table, oid: relid, batchId, windowStart, files: mf, schemaSha256: schemaSha, ddlSha256: null, lsnStart: lsn, lsnEnd: lsn });
  const manifestSha = sha256(manifestText);
  await writeFileAtomic(path.join(dir, FILES.manifest), manifestText, cfg.output.fileMode);
  files.push(small(FILES.manifest, 'manifest', manifestText, manifestSha));
  await fsyncDir(dir);
  await fsyncDir(path.dirname(dir));
  const batchRoot = rootOf(parts.map((p) => p.merkle.root)).toString('hex');
  // The batch index names its predecessor: writing it and registering it is one step of the chain.
  await d.chain.run(async (prev) => {
    const indexText = batchJson({
      batchId,
      kind: 'reload',
      windowStart,
      slot: cfg.slot,
      source: { database: server.database, systemIdentifier: server.systemIdentifier },
      lsnStart: lsn,
      lsnEnd: lsn,
      manifests: [{ path: `${rel}/${FILES.manifest}`, sha256: manifestSha, schema: op.schema, table: op.table, rows }],
      merkle: { treeSize: parts.length, root: batchRoot },
      prev,
    });
    const indexSha = sha256(indexText);
    await ensureDir(path.join(cfg.output.dir, BATCHES_DIR), cfg.output.dirMode);
    await writeFileAtomic(path.join(cfg.output.dir, indexPath), indexText, cfg.output.fileMode);
    await fsyncDir(path.join(cfg.output.dir, BATCHES_DIR));
    files.push({ path: indexPath, type: 'batch', schema: null, table: null, lsnStart: lsn, lsnEnd: lsn, rows, bytes: Buffer.byteLength(indexText), rawBytes: null, sha256: indexSha, merkleRoot: null });

    await withTransaction(db, async (c) => {
      await insertFiles(c, cfg.slot, batchId, windowStart.toISOString(), files);
      await c.query(
        `INSERT INTO "cdc_registry"."batches"
           ("slot_name", "batch_id", "window_start", "lsn_start", "lsn_end", "files", "rows", "index_path", "index_sha256", "merkle_root", "kind", "prev_batch_id")
         VALUES ($1, $2, $3, $4::pg_lsn, $4::pg_lsn, $5, $6, $7, $8, $9, 'reload', $10)`,
        [cfg.slot, batchId, windowStart.toISOString(), formatLsn(lsn), files.length, rows, indexPath, indexSha, batchRoot, prev?.batchId ?? null],
      );
      await reloads.finishIn(c, op, { rows, rawBytes, batchId, chunks: parts.length, workers, relid });
      await enqueueAnchors(c, cfg.slot, batchId, anchorTargets(cfg));
      await c.query(`DELETE FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1 AND "batch_id" = $2`, [cfg.slot, batchId]);
    });
    await registry.localIntents?.done(batchId);
  });
  log.info({ table: `${op.schema}.${op.table}`, batch: batchId, reason: op.reason, rows, raw_bytes: rawBytes, parts: parts.length, lsn: lsnHex(lsn), ms: Date.now() - startedAt }, 'reloaded');
}
