/**
 * The flush writer: turns a flush's open table windows into files (streaming.csv.gz, schema.yml,
 * ddl.sql, manifest.json per table, one batch index) and returns the flush record that the
 * registry commits. The controller decides *when* to flush; this decides *what lands on disk*:
 * the write intent first (so a crash leaves only debris the start-up sweep knows), then each file
 * written to a temporary name, fsynced, renamed, and its directory fsynced (SPEC §3, §6).
 */
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Lsn } from '../lsn.js';
import type { FileRecord, FlushRecord, Registry } from '../registry/registry.js';
import type { ReloadRequest } from '../registry/reloads.js';
import type { ServerInfo } from '../source/setup.js';
import { ensureDir, fsyncDir, renameDurable, writeFileAtomic } from './atomic.js';
import { batchJson, manifestJson, type ManifestFile } from './documents.js';
import { BATCHES_DIR, FILES } from './layout.js';
import type { StreamingFile } from './table-window.js';
import { rootOf } from '../proof/merkle.js';
import type { ChainLink } from '../proof/chain.js';
import { partitionsYml, type PartitionsDoc } from './partitions.js';

/** One table's part of a flush, as the controller hands it over. */
export interface WindowToWrite {
  schema: string;
  table: string;
  relid: number | null;
  folder: string;
  file: StreamingFile | null;
  ddl: string[];
  ddlLsnStart: Lsn | null;
  ddlLsnEnd: Lsn | null;
  dropped: boolean;
  /** A partitioned root's membership in this window: its partitions.yml (SPEC §3). */
  partitions: { doc(generatedAt: Date): PartitionsDoc | null } | null;
  /** schema.yml for this window, given its LSN range. */
  schemaText(lsnStart: Lsn | null, lsnEnd: Lsn | null): Promise<string>;
}

export interface FlushInput {
  cfg: Config;
  server: ServerInfo;
  registry: Registry;
  batchId: string;
  windowStartMs: number;
  /** The LSN the slot may be confirmed to once this flush is registered. */
  lsnEnd: Lsn;
  windows: WindowToWrite[];
  /** The batch before this one (hash chain). */
  prev: ChainLink;
  /** Reload requests registered with this flush (kept in the local write intent too). */
  reloads?: ReloadRequest[];
}

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

const minLsn = (a: Lsn | null, b: Lsn | null): Lsn | null => (a === null ? b : b === null ? a : a < b ? a : b);
const maxLsn = (a: Lsn | null, b: Lsn | null): Lsn | null => (a === null ? b : b === null ? a : a > b ? a : b);

function smallFile(p: string, type: FileRecord['type'], w: WindowToWrite, text: string, sha: string): FileRecord {
  return { path: p, type, schema: w.schema, table: w.table, lsnStart: null, lsnEnd: null, rows: null, bytes: Buffer.byteLength(text), rawBytes: null, sha256: sha, merkleRoot: null };
}

/**
 * A window gets a folder only when it has something to hold: rows, DDL, or the table's drop. A
 * reload marker opens a window only so that its transaction is flushed (and the request
 * registered) at once; with nothing else in it, it leaves no folder with an empty manifest.
 */
export function hasContent(w: WindowToWrite): boolean {
  return (w.file !== null && w.file.rows > 0) || w.ddl.length > 0 || w.dropped;
}

/** Writes the flush's files; returns the record to register (its `reloads` and `anchors` are the caller's). */
export async function writeFlush(x: FlushInput): Promise<Omit<FlushRecord, 'reloads' | 'anchors'>> {
  const { cfg, batchId } = x;
  const out = cfg.output.dir;
  const windowStart = new Date(x.windowStartMs);
  const files: FileRecord[] = [];
  const manifests: { path: string; sha256: string; schema: string; table: string; rows: number }[] = [];
  let rows = 0;
  let lsnStart: Lsn | null = null;
  const roots: Buffer[] = [];
  const tables = x.windows.filter(hasContent).sort((a, b) => (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  // Write intent first: after a crash the start-up sweep removes exactly these if unregistered.
  const intent = tables.flatMap((w) =>
    [...(w.file && w.file.rows > 0 ? [FILES.streaming] : []), FILES.schema, ...(w.ddl.length ? [FILES.ddl] : []), ...(w.partitions ? [FILES.partitions] : []), FILES.manifest].map(
      (f) => `${w.folder}/${batchId}/${f}`,
    ),
  );
  await x.registry.recordIntent(batchId, [...intent, `${BATCHES_DIR}/${batchId}.json`], x.reloads);
  for (const w of tables) {
    const rel = `${w.folder}/${batchId}`;
    const dir = path.join(out, w.folder, batchId);
    await ensureDir(dir, cfg.output.dirMode);
    const mfFiles: ManifestFile[] = [];
    const f = w.file;
    if (f && f.rows > 0) {
      const { tmpPath, stats, merkle } = await f.finish();
      await renameDurable(tmpPath, path.join(dir, FILES.streaming));
      const root = merkle.root.toString('hex');
      roots.push(merkle.root);
      mfFiles.push({ name: FILES.streaming, type: 'streaming', rows: f.rows, bytes: stats.bytes, rawBytes: stats.rawBytes, sha256: stats.sha256, lsnStart: f.lsnStart, lsnEnd: f.lsnEnd, merkle: { treeSize: merkle.treeSize, root, blocks: merkle.blocks.map((b) => b.toString('hex')) } });
      files.push({ path: `${rel}/${FILES.streaming}`, type: 'streaming', schema: w.schema, table: w.table, lsnStart: f.lsnStart, lsnEnd: f.lsnEnd, rows: f.rows, bytes: stats.bytes, rawBytes: stats.rawBytes, sha256: stats.sha256, merkleRoot: root });
      rows += f.rows;
    }
    const wLsnStart = minLsn(f?.lsnStart ?? null, w.ddlLsnStart);
    const wLsnEnd = maxLsn(f?.lsnEnd ?? null, w.ddlLsnEnd);
    lsnStart = minLsn(lsnStart, wLsnStart);

    const schemaText = await w.schemaText(wLsnStart, wLsnEnd);
    const schemaSha = sha256(schemaText);
    await writeFileAtomic(path.join(dir, FILES.schema), schemaText, cfg.output.fileMode);
    files.push(smallFile(`${rel}/${FILES.schema}`, 'schema', w, schemaText, schemaSha));
    let ddlSha: string | null = null;
    if (w.ddl.length) {
      const ddlText = w.ddl.join('');
      ddlSha = sha256(ddlText);
      await writeFileAtomic(path.join(dir, FILES.ddl), ddlText, cfg.output.fileMode);
      files.push(smallFile(`${rel}/${FILES.ddl}`, 'ddl', w, ddlText, ddlSha));
    }
    let partitionsSha: string | null = null;
    const pdoc = w.partitions?.doc(new Date()) ?? null;
    if (pdoc) {
      const text = partitionsYml(pdoc);
      partitionsSha = sha256(text);
      await writeFileAtomic(path.join(dir, FILES.partitions), text, cfg.output.fileMode);
      files.push(smallFile(`${rel}/${FILES.partitions}`, 'partitions', w, text, partitionsSha));
    }
    const manifestText = manifestJson({
      schema: w.schema,
      table: w.table,
      oid: w.relid ?? 0,
      batchId,
      windowStart,
      files: mfFiles,
      schemaSha256: schemaSha,
      ddlSha256: ddlSha,
      partitionsSha256: partitionsSha,
      lsnStart: wLsnStart,
      lsnEnd: wLsnEnd,
    });
    const manifestSha = sha256(manifestText);
    await writeFileAtomic(path.join(dir, FILES.manifest), manifestText, cfg.output.fileMode);
    files.push(smallFile(`${rel}/${FILES.manifest}`, 'manifest', w, manifestText, manifestSha));
    manifests.push({ path: `${rel}/${FILES.manifest}`, sha256: manifestSha, schema: w.schema, table: w.table, rows: f?.rows ?? 0 });
    await fsyncDir(dir);
  }
  const batchDir = path.join(out, BATCHES_DIR);
  await ensureDir(batchDir, cfg.output.dirMode);
  const indexText = batchJson({
    batchId,
    windowStart,
    slot: cfg.slot,
    source: { database: x.server.database, systemIdentifier: x.server.systemIdentifier },
    lsnStart,
    lsnEnd: x.lsnEnd,
    manifests,
    merkle: { treeSize: roots.length, root: rootOf(roots).toString('hex') },
    prev: x.prev,
  });
  const indexSha = sha256(indexText);
  const indexPath = `${BATCHES_DIR}/${batchId}.json`;
  await writeFileAtomic(path.join(out, indexPath), indexText, cfg.output.fileMode);
  await fsyncDir(batchDir);
  files.push({ path: indexPath, type: 'batch', schema: null, table: null, lsnStart, lsnEnd: x.lsnEnd, rows, bytes: Buffer.byteLength(indexText), rawBytes: null, sha256: indexSha, merkleRoot: null });
  return {
    slot: cfg.slot,
    batchId,
    windowStartMs: x.windowStartMs,
    lsnStart,
    lsnEnd: x.lsnEnd,
    rows,
    indexPath,
    indexSha256: indexSha,
    merkleRoot: rootOf(roots).toString('hex'),
    prevBatchId: x.prev?.batchId ?? null,
    files,
    tables: tables.map((w) => ({ schema: w.schema, table: w.table, relid: w.relid, dropped: w.dropped })),
  };
}
