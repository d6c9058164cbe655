/**
 * Places one reload operation's files and registers them (SPEC §3, §6): the parts go into a
 * window folder of the table (the window of the snapshot, named from the batch sequence shared
 * with flushes), with schema.yml, manifest.json (entries `type: full_reload`, `lsn: {start: S,
 * end: S}`) and a batch index; the intent is recorded before the first rename, and the files,
 * the batch and the operation's end are one registry transaction. Nothing here holds or waits
 * for a lock on the application's tables: the marker's comment is put back afterwards, by the
 * reloader, once every export worker has ended its transaction (reloader.ts).
 */
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Lsn } from '../lsn.js';
import { formatLsn, lsnHex } from '../lsn.js';
import { alignWindow, BATCHES_DIR, FILES, flushName, reloadPartName, tableFolder, windowName } from '../output/layout.js';
import { ensureDir, ensureDirsIn, fsyncDir, renameDurable, writeFileAtomic } from '../output/atomic.js';
import { batchJson, manifestJson, schemaYml, type ManifestFile } from '../output/documents.js';
import { insertFiles, type FileRecord } from '../registry/registry.js';
import type { ReloadOp } from '../registry/reloads.js';
import { withTransaction } from '../registry/tx.js';
import { rootOf } from '../proof/merkle.js';
import { anchorTargets, enqueueAnchors } from '../registry/anchors.js';
import type { TableDef } from '../source/setup.js';
import type { ReloaderDeps } from './reloader.js';
import type { ChunkResult } from './workers.js';
import { failpoint } from '../failpoints.js';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

const IDENTITY: Record<string, 'default' | 'full' | 'index' | 'nothing'> = { d: 'default', f: 'full', i: 'index', n: 'nothing' };

/** One table's finished export, ready to be placed and registered. */
export interface FinishedExport {
  op: ReloadOp;
  def: TableDef;
  columns: readonly string[];
  relid: number;
  parts: ChunkResult[];
  workers: number;
}

/** Tables registered in one batch at most (the batch index lists a manifest per table). */
const GROUP_MAX = 200;

/**
 * Finalizes tables as their exports finish, in groups: the first finished table is registered at
 * once, and every table that finishes meanwhile waits for the next group, so a run of many small
 * tables is registered in a few batches while one large table is registered the moment it is done.
 */
export class FinalizeQueue {
  private readonly queue: { item: FinishedExport; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private running = false;

  constructor(
    private readonly d: ReloaderDeps,
    private readonly lsn: Lsn,
    private readonly takenAt: number,
    /** When this attempt of the export began (claimed), for the `ms` of the `reloaded` line. */
    private readonly startedAt: number,
  ) {}

  /** Resolves once the table's export is registered. */
  add(item: FinishedExport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length) {
        const group = this.queue.splice(0, GROUP_MAX);
        try {
          await finalizeReloads(this.d, group.map((g) => g.item), this.lsn, this.takenAt, this.startedAt);
          for (const g of group) g.resolve();
        } catch (e) {
          for (const g of group) g.reject(e);
        }
      }
    } finally {
      this.running = false;
    }
  }
}

/** Placing one table's files runs this many tables at a time (each mostly waits on fsync). */
const PLACE_CONCURRENCY = 16;

/**
 * Places and registers the exports of one or more tables of the same snapshot as one batch: one
 * batch name (each table's files in its own folder of that name), one write intent, one batch
 * index listing every table's manifest, one registry transaction. Many small tables (an initial
 * export) thus cost one registration and one link of the chain together instead of one each, and
 * their files are written and fsynced side by side.
 */
export async function finalizeReloads(d: ReloaderDeps, items: FinishedExport[], lsn: Lsn, takenAt: number, startedAt: number): Promise<void> {
  const { cfg, registry, reloads, db, log } = d;
  const started = Date.now();
  const win = alignWindow(takenAt, cfg.batch.intervalMs);
  const batchId = flushName(win, await registry.nextBatchSeq(windowName(win)));
  const indexPath = `${BATCHES_DIR}/${batchId}.json`;
  const rels = items.map((it) => `${tableFolder(it.op.schema, it.op.table)}/${batchId}`);
  const partNames = items.map((it) => (it.parts.length === 1 ? [FILES.fullReload] : it.parts.map((_, i) => reloadPartName(i))));
  await registry.recordIntent(batchId, [...items.flatMap((_, k) => [...partNames[k].map((n) => `${rels[k]}/${n}`), `${rels[k]}/${FILES.schema}`, `${rels[k]}/${FILES.manifest}`]), indexPath]);
  await ensureDirsIn(cfg.output.dir, items.map((it) => tableFolder(it.op.schema, it.op.table)), cfg.output.dirMode);
  const placed: Placed[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PLACE_CONCURRENCY, items.length) }, async () => {
      while (next < items.length) {
        const k = next++;
        placed[k] = await placeTable(d, items[k], batchId, rels[k], partNames[k], lsn, win, takenAt);
      }
    }),
  );
  const placedAt = Date.now();
  let indexedAt = 0;
  const files = placed.flatMap((p) => p.files);
  const rows = placed.reduce((n, p) => n + p.rows, 0);
  const batchRoot = rootOf(items.flatMap((it) => it.parts.map((p) => p.merkle.root))).toString('hex');
  const windowStart = new Date(win);
  // The batch index names its predecessor: writing it and registering it is one step of the chain.
  await d.chain.run(async (prev) => {
    const indexText = batchJson({
      batchId,
      kind: 'reload',
      windowStart,
      slot: cfg.slot,
      source: { database: d.server.database, systemIdentifier: d.server.systemIdentifier },
      lsnStart: lsn,
      lsnEnd: lsn,
      manifests: items.map((it, k) => ({ path: `${rels[k]}/${FILES.manifest}`, sha256: placed[k].manifestSha, schema: it.op.schema, table: it.op.table, rows: placed[k].rows })),
      merkle: { treeSize: items.reduce((n, it) => n + it.parts.length, 0), root: batchRoot },
      prev,
    });
    const indexSha = sha256(indexText);
    await ensureDir(path.join(cfg.output.dir, BATCHES_DIR), cfg.output.dirMode);
    await writeFileAtomic(path.join(cfg.output.dir, indexPath), indexText, cfg.output.fileMode);
    await fsyncDir(path.join(cfg.output.dir, BATCHES_DIR));
    files.push({ path: indexPath, type: 'batch', schema: null, table: null, lsnStart: lsn, lsnEnd: lsn, rows, bytes: Buffer.byteLength(indexText), rawBytes: null, sha256: indexSha, merkleRoot: null });

    indexedAt = Date.now();
    await failpoint('reload-before-register');
    await withTransaction(db, async (c) => {
      await insertFiles(c, cfg.slot, batchId, windowStart.toISOString(), files);
      await c.query(
        `INSERT INTO "cdc_registry"."batches"
           ("slot_name", "batch_id", "window_start", "lsn_start", "lsn_end", "files", "rows", "index_path", "index_sha256", "merkle_root", "kind", "prev_batch_id")
         VALUES ($1, $2, $3, $4::pg_lsn, $4::pg_lsn, $5, $6, $7, $8, $9, 'reload', $10)`,
        [cfg.slot, batchId, windowStart.toISOString(), formatLsn(lsn), files.length, rows, indexPath, indexSha, batchRoot, prev?.batchId ?? null],
      );
      await reloads.finishManyIn(
        c,
        batchId,
        items.map((it, k) => ({ op: it.op, rows: placed[k].rows, rawBytes: placed[k].rawBytes, chunks: it.parts.length, workers: it.workers, relid: it.relid })),
      );
      await enqueueAnchors(c, cfg.slot, batchId, anchorTargets(cfg));
      await c.query(`DELETE FROM "cdc_registry"."write_intents" WHERE "slot_name" = $1 AND "batch_id" = $2`, [cfg.slot, batchId]);
    });
    await registry.localIntents?.done(batchId);
  });
  log.debug({ batch: batchId, tables: items.length, place_ms: placedAt - started, index_ms: indexedAt - placedAt, register_ms: Date.now() - indexedAt }, 'reload batch registered');
  for (let k = 0; k < items.length; k++) {
    const { op, parts } = items[k];
    log.info({ table: `${op.schema}.${op.table}`, batch: batchId, reason: op.reason, rows: placed[k].rows, raw_bytes: placed[k].rawBytes, parts: parts.length, lsn: lsnHex(lsn), ms: Date.now() - startedAt, tables_in_batch: items.length }, 'reloaded');
  }
}

interface Placed {
  files: FileRecord[];
  rows: number;
  rawBytes: number;
  manifestSha: string;
}

/** One table's parts renamed into its folder, with schema.yml and manifest.json, all durable. */
async function placeTable(d: ReloaderDeps, it: FinishedExport, batchId: string, rel: string, names: string[], lsn: Lsn, win: number, takenAt: number): Promise<Placed> {
  const { cfg, server } = d;
  const { op, def, columns, relid, parts } = it;
  const dir = path.join(cfg.output.dir, rel);
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
  const manifestText = manifestJson({ schema: op.schema, table: op.table, oid: relid, batchId, windowStart: new Date(win), files: mf, schemaSha256: schemaSha, ddlSha256: null, lsnStart: lsn, lsnEnd: lsn });
  const manifestSha = sha256(manifestText);
  // Side by side: both fsyncs are in flight together (ext4 commits them in one journal commit).
  await Promise.all([writeFileAtomic(path.join(dir, FILES.schema), schemaText, cfg.output.fileMode), writeFileAtomic(path.join(dir, FILES.manifest), manifestText, cfg.output.fileMode)]);
  files.push(small(FILES.manifest, 'manifest', manifestText, manifestSha));
  // The table folder was fsynced by ensureDir when it made this folder in it.
  await fsyncDir(dir);
  return { files, rows, rawBytes, manifestSha };
}
