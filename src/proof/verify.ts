/**
 * `pg-egress verify`: recomputes what the manifests and batch indexes claim (SPEC §9) from the
 * files alone: each data file's sha256, record count and RFC 6962 root (naming the first block of
 * records that differs, and for streaming files the first record out of (_lsn, _seq) order), the
 * sha256 of schema.yml, ddl.sql and each manifest, each batch root, and the hash chain of batch
 * indexes (a deleted or replaced batch breaks a link). No database, no network: no `pg` import.
 */
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import zlib from 'node:zlib';
import { pipeline, Transform, type Readable } from 'node:stream';
import { CsvRecordSplitter } from '../output/csv.js';
import { BLOCK, leafHash, MerkleBuilder, rootOf } from './merkle.js';

export interface ManifestFileEntry {
  name: string;
  type: string;
  rows: number;
  sha256: string;
  merkle?: { algorithm: string; tree_size: number; root: string; block_size?: number; block_roots?: string[] };
}
export interface Manifest {
  batch_id: string;
  files: ManifestFileEntry[];
  schema_yml: { name: string; sha256: string };
  ddl_sql: { name: string; sha256: string } | null;
  /** A partitioned root's membership (SPEC §3). */
  partitions_yml?: { name: string; sha256: string } | null;
}
export interface BatchIndex {
  batch_id: string;
  manifests: { path: string; sha256: string }[];
  merkle?: { tree_size: number; root: string };
  prev?: { batch_id: string; sha256: string } | null;
}

export interface VerifyReport {
  batches: number;
  manifests: number;
  files: number;
  records: number;
  problems: string[];
}

const sha256File = async (file: string): Promise<string> => {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
};

/** Streams a gzipped CSV file's records (header dropped) through `onRecord`. */
export async function forEachRecord(file: string, onRecord: (rec: Buffer, index: number) => void): Promise<number> {
  return forEachRecordOf(createReadStream(file), onRecord);
}

/** The same over any stream of the gzipped bytes (an S3 object, src/archive/verify-store.ts). */
export async function forEachRecordOf(raw: Readable, onRecord: (rec: Buffer, index: number) => void): Promise<number> {
  let header = true;
  let n = 0;
  const splitter = new CsvRecordSplitter((rec) => {
    if (header) {
      header = false;
      return;
    }
    onRecord(rec, n++);
  });
  const input = pipeline(raw, zlib.createGunzip(), () => undefined);
  for await (const chunk of input) splitter.push(chunk as Buffer);
  splitter.end();
  return n;
}

/** (_lsn, _seq) of a streaming record: its first two fields, never quoted. */
function lsnSeq(rec: Buffer): string | null {
  const a = rec.indexOf(0x2c);
  const b = a < 0 ? -1 : rec.indexOf(0x2c, a + 1);
  if (a !== 16 || b < 0) return null;
  return rec.toString('latin1', 0, 16) + '/' + rec.toString('latin1', a + 1, b).padStart(10, '0');
}

/** A data file's records as they pass: their Merkle tree and, for streaming files, their (_lsn, _seq) order. */
class LeafCheck {
  readonly tree = new MerkleBuilder();
  orderIssue: string | null = null;
  private prev = '';

  constructor(private readonly entry: ManifestFileEntry) {}

  add(rec: Buffer, i: number): void {
    this.tree.addLeafHash(leafHash(rec));
    if (this.entry.type === 'streaming' && this.orderIssue === null) {
      const k = lsnSeq(rec);
      if (k === null || k <= this.prev) this.orderIssue = `record ${i} is out of (_lsn, _seq) order or malformed`;
      else this.prev = k;
    }
  }
}

/** The records read (`records`) against the manifest's Merkle root, tree size and row count. */
function checkAgainstManifest(
  where: string,
  entry: ManifestFileEntry,
  leaves: LeafCheck,
  records: number,
  problems: string[],
  before: number,
): { root: Buffer; records: number } | null {
  const m = leaves.tree;
  const orderIssue = leaves.orderIssue;
  const mk = entry.merkle;
  if (!mk) {
    problems.push(`${where}: the manifest has no Merkle root for it`);
    return null;
  }
  const root = m.root();
  // Two claims, each named on its own: the tree's size and the manifest's row count.
  if (records !== mk.tree_size) problems.push(`${where}: ${records} records, the manifest says ${mk.tree_size} (records were added or removed)`);
  if (records !== entry.rows) problems.push(`${where}: ${records} records, but its manifest entry says "rows": ${entry.rows} (the manifest or the file was changed)`);
  if (root.toString('hex') !== mk.root) {
    const blocks = mk.block_roots ?? [];
    const bad = m.blocks.findIndex((b, i) => i >= blocks.length || b.toString('hex') !== blocks[i]);
    const at = bad >= 0 ? `the first difference is in records ${bad * BLOCK}-${bad * BLOCK + BLOCK - 1}` : `the first difference is in records from ${blocks.length * BLOCK} on`;
    problems.push(`${where}: Merkle root differs from the manifest; ${orderIssue ?? at}`);
  } else if (orderIssue) {
    problems.push(`${where}: ${orderIssue}`);
  }
  return problems.length === before ? { root, records } : null;
}

/** Checks one data file against its manifest entry; returns its root, or null when it failed. */
export async function verifyDataFile(
  file: string,
  entry: ManifestFileEntry,
  problems: string[],
): Promise<{ root: Buffer; records: number } | null> {
  const where = file;
  if (!existsSync(file)) {
    problems.push(`${where}: missing (listed in its manifest)`);
    return null;
  }
  const before = problems.length;
  if ((await sha256File(file)) !== entry.sha256) problems.push(`${where}: sha256 differs from the manifest (the file was changed)`);
  const leaves = new LeafCheck(entry);
  const records = await forEachRecord(file, (rec, i) => {
    leaves.add(rec, i);
  }).catch((e: unknown) => {
    problems.push(`${where}: cannot be read as gzipped CSV (${(e as Error).message})`);
    return -1;
  });
  if (records < 0) return null;
  return checkAgainstManifest(where, entry, leaves, records, problems, before);
}

/**
 * The checks of verifyDataFile over a stream, in one pass (an S3 object is read once): the sha256
 * of the bytes as they arrive, and the records of the gunzipped bytes. Messages name `where`.
 */
export async function verifyDataStream(
  where: string,
  raw: Readable,
  entry: ManifestFileEntry,
  problems: string[],
): Promise<{ root: Buffer; records: number } | null> {
  const before = problems.length;
  const h = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
  });
  const leaves = new LeafCheck(entry);
  let readError: Error | null = null;
  const records = await forEachRecordOf(raw.pipe(hashing), (rec, i) => {
    leaves.add(rec, i);
  }).catch((e: unknown) => {
    readError = e as Error;
    raw.destroy(); // the rest is not read: close the connection or file
    return -1;
  });
  if (records < 0) {
    // Not gzipped CSV: its bytes cannot be what the manifest's sha256 names either (that file was).
    problems.push(`${where}: cannot be read as gzipped CSV (${(readError as Error | null)?.message ?? 'error'})`);
    return null;
  }
  if (h.digest('hex') !== entry.sha256) problems.push(`${where}: sha256 differs from the manifest (the file was changed)`);
  return checkAgainstManifest(where, entry, leaves, records, problems, before);
}

async function readJson<T>(file: string, problems: string[]): Promise<T | null> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as T;
  } catch (e) {
    problems.push(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'not valid JSON'}`);
    return null;
  }
}

/** One window folder: its manifest's files and small documents. Returns the data files' roots. */
export async function verifyWindow(dir: string, report: VerifyReport): Promise<Buffer[] | null> {
  const manifest = await readJson<Manifest>(path.join(dir, 'manifest.json'), report.problems);
  if (!manifest) return null;
  report.manifests++;
  const roots: Buffer[] = [];
  let ok = true;
  for (const f of manifest.files) {
    const r = await verifyDataFile(path.join(dir, f.name), f, report.problems);
    report.files++;
    if (r) {
      roots.push(r.root);
      report.records += r.records;
    } else {
      ok = false;
      if (f.merkle) roots.push(Buffer.from(f.merkle.root, 'hex'));
    }
  }
  for (const doc of [manifest.schema_yml, manifest.ddl_sql, manifest.partitions_yml]) {
    if (!doc) continue;
    const p = path.join(dir, doc.name);
    if (!existsSync(p)) report.problems.push(`${p}: missing (listed in its manifest)`);
    else if ((await sha256File(p)) !== doc.sha256) report.problems.push(`${p}: sha256 differs from the manifest`);
  }
  void ok;
  return roots;
}

/**
 * The chain: every predecessor exists with the sha256 named; no two batches share one; one first.
 * `indexes` by batch id, each with its `file` as messages name it.
 */
export function chainProblems(indexes: Map<string, { index: BatchIndex; sha256: string; file: string }>, bdir: string): string[] {
  const problems: string[] = [];
  const successors = new Map<string, string>();
  let firsts = 0;
  for (const { index, file } of indexes.values()) {
    const prev = index.prev;
    if (prev === undefined) continue; // written before the chain existed
    if (prev === null) {
      firsts++;
      continue;
    }
    const p = indexes.get(prev.batch_id);
    if (!p) problems.push(`${file}: its predecessor batch ${prev.batch_id} is missing (a batch index was deleted): the chain is broken`);
    else if (p.sha256 !== prev.sha256) problems.push(`${file}: its predecessor ${prev.batch_id} was replaced (sha256 differs): the chain is broken`);
    const other = successors.get(prev.batch_id);
    if (other) problems.push(`${file}: batch ${other} names the same predecessor ${prev.batch_id}: the chain forks`);
    successors.set(prev.batch_id, index.batch_id);
  }
  if (firsts > 1) problems.push(`${bdir}: ${firsts} batches claim to be the first of the chain`);
  return problems;
}

/** The whole output folder: every batch index, its manifests, and the chain between them. */
export async function verifyOutput(outDir: string): Promise<VerifyReport> {
  const report: VerifyReport = { batches: 0, manifests: 0, files: 0, records: 0, problems: [] };
  const bdir = path.join(outDir, '_batches');
  const names = existsSync(bdir) ? (await fsp.readdir(bdir)).filter((n) => n.endsWith('.json')).sort() : [];
  const indexes = new Map<string, { index: BatchIndex; sha256: string; file: string }>();
  for (const n of names) {
    const file = path.join(bdir, n);
    const index = await readJson<BatchIndex>(file, report.problems);
    if (!index) continue;
    indexes.set(index.batch_id, { index, sha256: await sha256File(file), file });
  }
  const seenManifests = new Set<string>();
  for (const { index, file } of indexes.values()) {
    report.batches++;
    const roots: Buffer[] = [];
    for (const m of index.manifests) {
      seenManifests.add(m.path);
      const mpath = path.join(outDir, m.path);
      if (!existsSync(mpath)) {
        report.problems.push(`${file}: lists ${m.path}, which is missing (a batch folder was deleted)`);
        continue;
      }
      if ((await sha256File(mpath)) !== m.sha256) report.problems.push(`${mpath}: sha256 differs from batch index ${index.batch_id}`);
      const r = await verifyWindow(path.dirname(mpath), report);
      if (r) roots.push(...r);
    }
    if (index.merkle && rootOf(roots).toString('hex') !== index.merkle.root) report.problems.push(`${file}: batch root differs from its files' roots`);
  }
  report.problems.push(...chainProblems(indexes, bdir));
  // Manifests that no batch index lists: added behind our back, or their batch index was deleted.
  for (const top of existsSync(outDir) ? await fsp.readdir(outDir, { withFileTypes: true }) : []) {
    if (!top.isDirectory() || top.name.startsWith('_')) continue;
    for (const w of await fsp.readdir(path.join(outDir, top.name))) {
      const rel = `${top.name}/${w}/manifest.json`;
      if (existsSync(path.join(outDir, rel)) && !seenManifests.has(rel)) report.problems.push(`${path.join(outDir, rel)}: in no batch index (its batch index was deleted, or the folder was added)`);
    }
  }
  return report;
}
