/**
 * The one batch commit (SPEC §3, §6, §9): turns files written to `_tmp` into a registered batch,
 * for a flush of streaming windows and for an export alike (and for any new kind of batch):
 *
 * 1. the write intent (registry and output.dir's local copy), before anything is placed, so that
 *    after a crash the start-up sweep removes exactly these paths if they were never registered;
 * 2. per table: its data files renamed into `<table>/<batch>/`, its small files (schema.yml,
 *    ddl.sql, partitions.yml) and manifest.json written atomically, the folder fsynced (a batch
 *    of many tables: no fsync each, one syncfs of the file system once all are placed instead:
 *    sync-policy.ts);
 * 3. the batch index, naming its predecessor (hash chain) and the batch root over the data
 *    files' Merkle roots, written and registered as one step of the chain: files, batch row,
 *    what the kind adds (`register`), anchor queue entries and the intent's end in one registry
 *    transaction.
 */
import path from 'node:path';
import type { Lsn } from '../lsn.js';
import type { FileRecord, FileType } from '../registry/batches.js';
import type { ChainLink } from '../proof/chain.js';
import { rootOf } from '../proof/merkle.js';
import { sha256Hex } from '../hash.js';
import { failpoint } from '../failpoints.js';
import { ensureDir, ensureDirInUnsynced, ensureDirsIn, fsyncDir, fsyncFile, renameDurable, renameUnsynced, TMP_SUFFIX, writeFileAtomic, writeTmpFileUnsynced } from '../output/atomic.js';
import { batchJson, manifestJson, type ManifestFile } from '../output/documents.js';
import { dirtyBytes, kernelVersion, syncFileSystem, syncfsAvailable } from '../output/syncfs.js';
import { batchSync, type SyncContext } from './sync-policy.js';
import { BATCHES_DIR, FILES } from '../output/layout.js';
import type { ReloadRequest } from '../registry/reload-requests.js';
import type { AnchorTarget } from '../registry/anchors.js';
import type pg from 'pg';

/** A finished data file in `_tmp` (a streaming file, or one part of an export). */
export interface DataFile {
  name: string;
  type: 'streaming' | 'full_reload';
  tmpPath: string;
  rows: number;
  stats: { bytes: number; rawBytes: number; sha256: string };
  merkle: { treeSize: number; root: Buffer; blocks: Buffer[] };
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
  /** false: written and closed without an fsync; placing it makes it durable. */
  synced?: boolean;
}

/** A small document of a table's folder, listed in its manifest by sha256. */
export interface SmallFile {
  name: typeof FILES.schema | typeof FILES.ddl | typeof FILES.partitions;
  type: Extract<FileType, 'schema' | 'ddl' | 'partitions'>;
  text: string;
}

/** One table's part of a batch. */
export interface BatchTable {
  schema: string;
  table: string;
  relid: number | null;
  /** The table's folder (layout.ts `tableFolder`). */
  folder: string;
  data: DataFile[];
  /** schema.yml first; then ddl.sql and partitions.yml when the window has them. */
  small: SmallFile[];
  /** The manifest's LSN range. */
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
}

export interface BatchInput {
  kind: 'flush' | 'reload';
  batchId: string;
  windowStartMs: number;
  /** The batch index's LSN range. */
  lsnStart: Lsn | null;
  lsnEnd: Lsn;
  tables: BatchTable[];
  /** Reload requests the batch registers (kept in the local write intent too). */
  reloads?: ReloadRequest[];
  anchors: readonly AnchorTarget[];
  /** Tables placed side by side (each mostly waits on fsync); 1 places them one after another. */
  concurrency?: number;
  /**
   * The batch may be made durable by one syncfs of output.dir's file system instead of an fsync
   * per file and folder, where sync-policy.ts finds it cheaper and safe (an export's many tables).
   */
  syncfs?: boolean;
  /**
   * Each table's folder exists in output.dir already (an export makes them while its COPYs run,
   * src/reload/reloader.ts): placing makes only the batch's folder in it (500 mkdir calls less
   * for 500 tables).
   */
  foldersMade?: boolean;
  /** What this kind of batch registers besides the batch itself, in the same transaction. */
  register: (c: pg.ClientBase) => Promise<void>;
  /**
   * Called once the batch's files are placed and durable and its registration has taken its
   * place in the chain (so a batch started after this one is registered after it).
   */
  onPlaced?: () => void;
}

/** Where a batch goes and how it is registered: the registry (or a fake of it in unit tests). */
export interface CommitTarget {
  outDir: string;
  dirMode: number;
  fileMode: number;
  slot: string;
  source: { database: string; systemIdentifier: string };
  recordIntent(batchId: string, paths: string[], reloads?: ReloadRequest[]): Promise<void>;
  registerBatch(b: import('../registry/batches.js').BatchRecord, extra: (c: pg.ClientBase) => Promise<void>): Promise<void>;
  /** Orders batches into the hash chain (src/proof/chain.ts). */
  chain: { run<T>(fn: (prev: ChainLink) => Promise<T>): Promise<T> };
  /** What sync-policy.ts decides on (default: this machine's, output/syncfs.ts); tests give their own. */
  syncContext?: () => Omit<SyncContext, 'tables' | 'fsyncs'>;
}

/** This machine: the addon's syncfs, the kernel, the dirty memory now. */
const machineSync = (): Omit<SyncContext, 'tables' | 'fsyncs'> => ({ available: syncfsAvailable(), kernel: kernelVersion(), dirtyBytes: dirtyBytes() });

/** What was committed, for logs and counters. */
export interface CommittedBatch {
  batchId: string;
  files: FileRecord[];
  rows: number;
  /** Rows and raw bytes per table, in `tables` order. */
  perTable: { rows: number; rawBytes: number }[];
  /** How the placed files were made durable (sync-policy.ts). */
  synced: 'filesystem' | 'files';
  /** Milliseconds of each step, for the debug log: intent, placing (with durability), chain and registration. */
  steps: { intent: number; place: number; register: number };
  /** The machine's dirty memory when `synced` was decided (null: not asked, or unknown). */
  dirtyBytes: number | null;
}

/** The paths a batch will place, in the order it places them (its write intent). */
export function intentPaths(x: Pick<BatchInput, 'batchId' | 'tables'>): string[] {
  return [
    ...x.tables.flatMap((t) => [...t.data.map((d) => d.name), ...t.small.map((s) => s.name), FILES.manifest].map((f) => `${t.folder}/${x.batchId}/${f}`)),
    `${BATCHES_DIR}/${x.batchId}.json`,
  ];
}

interface Placed {
  files: FileRecord[];
  rows: number;
  rawBytes: number;
  manifestSha: string;
}

/** Places and registers one batch; see the file comment. */
export async function commitBatch(t: CommitTarget, x: BatchInput): Promise<CommittedBatch> {
  const { batchId } = x;
  const windowStart = new Date(x.windowStartMs);
  // Placed file by file: each data file, small file and manifest, the batch's folder and the table's.
  const fsyncs = x.tables.reduce((n, w) => n + w.data.length + w.small.length + 3, 0);
  const ctx = x.syncfs ? (t.syncContext ?? machineSync)() : null;
  const synced = ctx ? batchSync({ tables: x.tables.length, fsyncs, ...ctx }) : 'files';
  const sync = synced === 'files';
  // One syncfs for the batch: the files go to their names only once their bytes are durable (the
  // first syncfs), as an fsync before each rename would have it, and the renames by the second.
  const renames: [string, string][] | null = sync ? null : [];
  const t0 = performance.now();
  await t.recordIntent(batchId, intentPaths(x), x.reloads);
  const t1 = performance.now();
  const concurrency = x.concurrency ?? 1;
  const placed: Placed[] = new Array(x.tables.length);
  if (renames) {
    // Nothing is fsynced one by one: each folder and file is a call on this thread (atomic.ts
    // ensureDirInUnsynced), a table at a time, yielding between tables.
    if (!x.foldersMade) for (const w of x.tables) ensureDirInUnsynced(t.outDir, w.folder, t.dirMode);
    for (let k = 0; k < x.tables.length; k++) {
      placed[k] = placeTable(t, x.tables[k], batchId, windowStart, renames);
      await yieldToLoop();
    }
    await syncFileSystem(t.outDir);
    for (let k = 0; k < renames.length; k++) {
      renameUnsynced(...renames[k]);
      if (k % 64 === 63) await yieldToLoop();
    }
    await syncFileSystem(t.outDir);
  } else {
    if (!x.foldersMade) await ensureDirsIn(t.outDir, x.tables.map((w) => w.folder), t.dirMode);
    await eachAtOnce(x.tables.length, concurrency, async (k) => {
      placed[k] = await placeTableDurably(t, x.tables[k], batchId, windowStart, concurrency > 1);
    });
  }
  const t2 = performance.now();
  const files = placed.flatMap((p) => p.files);
  const rows = placed.reduce((n, p) => n + p.rows, 0);
  const roots = x.tables.flatMap((w) => w.data.map((d) => d.merkle.root));
  const batchRoot = rootOf(roots).toString('hex');
  const indexPath = `${BATCHES_DIR}/${batchId}.json`;
  // The batch index names its predecessor: writing it and registering it is one step of the chain.
  const registered = t.chain.run(async (prev) => {
    const indexText = batchJson({
      batchId,
      ...(x.kind === 'flush' ? {} : { kind: x.kind }),
      windowStart,
      slot: t.slot,
      source: t.source,
      lsnStart: x.lsnStart,
      lsnEnd: x.lsnEnd,
      manifests: x.tables.map((w, k) => ({ path: `${w.folder}/${batchId}/${FILES.manifest}`, sha256: placed[k].manifestSha, schema: w.schema, table: w.table, rows: placed[k].rows })),
      merkle: { treeSize: roots.length, root: batchRoot },
      prev,
    });
    const indexSha = sha256Hex(indexText);
    const batchDir = path.join(t.outDir, BATCHES_DIR);
    await ensureDir(batchDir, t.dirMode);
    await writeFileAtomic(path.join(t.outDir, indexPath), indexText, t.fileMode);
    await fsyncDir(batchDir);
    files.push({ path: indexPath, type: 'batch', schema: null, table: null, lsnStart: x.lsnStart, lsnEnd: x.lsnEnd, rows, bytes: Buffer.byteLength(indexText), rawBytes: null, sha256: indexSha, merkleRoot: null });
    const record = {
      batchId,
      kind: x.kind,
      windowStartMs: x.windowStartMs,
      lsnStart: x.lsnStart,
      lsnEnd: x.lsnEnd,
      rows,
      indexPath,
      indexSha256: indexSha,
      merkleRoot: batchRoot,
      files,
      prevBatchId: prev?.batchId ?? null,
      anchors: x.anchors,
    };
    // Crash tests stop here: files placed and the index written, nothing registered (src/failpoints.ts).
    await failpoint(x.kind === 'flush' ? 'flush-after-rename' : 'reload-before-register');
    await t.registerBatch(record, x.register);
  });
  x.onPlaced?.();
  await registered;
  const ms = (a: number, b: number) => Math.round(b - a);
  const steps = { intent: ms(t0, t1), place: ms(t1, t2), register: ms(t2, performance.now()) };
  const perTable = placed.map((p) => ({ rows: p.rows, rawBytes: p.rawBytes }));
  return { batchId, files, rows, perTable, synced, steps, dirtyBytes: ctx?.dirtyBytes ?? null };
}

/** fn(0) … fn(n - 1), at most `concurrency` at a time. */
async function eachAtOnce(n: number, concurrency: number, fn: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Lets other work of the event loop run between the synchronous steps of a batch's placing. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What placing one table writes: the records of its files, its small files and manifest (no I/O). */
interface TablePlan extends Placed {
  /** The batch folder in the table's folder. */
  dir: string;
  /** Small files and manifest.json, by name. */
  docs: { name: string; text: string }[];
}

function planTable(t: CommitTarget, w: BatchTable, batchId: string, windowStart: Date): TablePlan {
  const rel = `${w.folder}/${batchId}`;
  const files: FileRecord[] = [];
  const mf: ManifestFile[] = [];
  let rows = 0;
  let rawBytes = 0;
  for (const d of w.data) {
    rows += d.rows;
    rawBytes += d.stats.rawBytes;
    const root = d.merkle.root.toString('hex');
    const { bytes, rawBytes: raw, sha256 } = d.stats;
    mf.push({ name: d.name, type: d.type, rows: d.rows, bytes, rawBytes: raw, sha256, lsnStart: d.lsnStart, lsnEnd: d.lsnEnd, merkle: { treeSize: d.merkle.treeSize, root, blocks: d.merkle.blocks.map((b) => b.toString('hex')) } });
    files.push({ path: `${rel}/${d.name}`, type: d.type, schema: w.schema, table: w.table, lsnStart: d.lsnStart, lsnEnd: d.lsnEnd, rows: d.rows, bytes, rawBytes: raw, sha256, merkleRoot: root });
  }
  const small = (name: string, type: FileType, text: string, sha: string): FileRecord => ({
    path: `${rel}/${name}`,
    type,
    schema: w.schema,
    table: w.table,
    lsnStart: null,
    lsnEnd: null,
    rows: null,
    bytes: Buffer.byteLength(text),
    rawBytes: null,
    sha256: sha,
    merkleRoot: null,
  });
  const shas = new Map<string, string>();
  const docs: { name: string; text: string }[] = [];
  for (const s of w.small) {
    const sha = sha256Hex(s.text);
    shas.set(s.type, sha);
    docs.push({ name: s.name, text: s.text });
    files.push(small(s.name, s.type, s.text, sha));
  }
  const manifestText = manifestJson({
    schema: w.schema,
    table: w.table,
    oid: w.relid ?? 0,
    batchId,
    windowStart,
    files: mf,
    schemaSha256: shas.get('schema') ?? '',
    ddlSha256: shas.get('ddl') ?? null,
    partitionsSha256: shas.get('partitions') ?? null,
    lsnStart: w.lsnStart,
    lsnEnd: w.lsnEnd,
  });
  const manifestSha = sha256Hex(manifestText);
  docs.push({ name: FILES.manifest, text: manifestText });
  files.push(small(FILES.manifest, 'manifest', manifestText, manifestSha));
  return { dir: path.join(t.outDir, rel), docs, files, rows, rawBytes, manifestSha };
}

/**
 * One table's files in place for a batch that one syncfs makes durable: the batch folder made,
 * small files and manifest.json written under their temporary names, nothing fsynced or renamed
 * here: the renames still to be made are added (commitBatch syncs the file system around them).
 */
function placeTable(t: CommitTarget, w: BatchTable, batchId: string, windowStart: Date, renames: [string, string][]): Placed {
  const p = planTable(t, w, batchId, windowStart);
  ensureDirInUnsynced(path.join(t.outDir, w.folder), batchId, t.dirMode);
  for (const d of w.data) renames.push([d.tmpPath, path.join(p.dir, d.name)]);
  for (const doc of p.docs) {
    const file = path.join(p.dir, doc.name);
    writeTmpFileUnsynced(file, doc.text, t.fileMode);
    renames.push([file + TMP_SUFFIX, file]);
  }
  return p;
}

/** One table's data files renamed into its folder, with its small files and manifest.json, each fsynced. */
async function placeTableDurably(t: CommitTarget, w: BatchTable, batchId: string, windowStart: Date, parallel: boolean): Promise<Placed> {
  const p = planTable(t, w, batchId, windowStart);
  // The table's folder exists (commitBatch or the export made it): the batch folder in it, and
  // one fsync of the table's folder, without ensureDir's look at every level first.
  await ensureDirsIn(path.join(t.outDir, w.folder), [batchId], t.dirMode);
  for (const d of w.data) {
    // Not fsynced when written (an export's small table): before its rename, as any file.
    if (d.synced === false) await fsyncFile(d.tmpPath);
    await renameDurable(d.tmpPath, path.join(p.dir, d.name));
  }
  const writes = p.docs.map((doc) => () => writeFileAtomic(path.join(p.dir, doc.name), doc.text, t.fileMode));
  // Side by side when tables are (an export's many small tables: their fsyncs share journal commits).
  if (parallel) await Promise.all(writes.map((f) => f()));
  else for (const f of writes) await f();
  // The batch folder's entry in the table's folder was made durable by ensureDirsIn.
  await fsyncDir(p.dir);
  return p;
}
