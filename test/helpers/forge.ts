/**
 * A consistent forgery, as an attacker with write access to output.dir and the registry would
 * make it: after a data file was edited, its manifest entry (sha256, sizes, rows, Merkle root and
 * block roots), the manifest's sha256 and rows in its batch index, the batch root, and every later
 * batch index's `prev` link are recomputed, and the registry's records of them updated, so that
 * `verify` (files, manifests, chain) finds nothing. Only a comparison with the source can.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { CsvRecordSplitter } from '../../src/output/csv.js';
import { MerkleBuilder, rootOf } from '../../src/proof/merkle.js';
import { withDb } from './egress.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface ManifestJson {
  files: {
    name: string;
    rows: number;
    bytes: number;
    raw_bytes: number;
    sha256: string;
    merkle: { tree_size: number; root: string; block_size?: number; block_roots?: string[] };
  }[];
}
interface IndexJson {
  batch_id: string;
  manifests: { path: string; sha256: string; rows: number }[];
  merkle: { tree_size: number; root: string };
  prev: { batch_id: string; sha256: string } | null;
}

/** Rewrites a gzipped CSV file's records (header kept) through `edit`. */
export function editRecords(file: string, edit: (records: string[]) => string[]): void {
  const text = zlib.gunzipSync(readFileSync(file)).toString('utf8');
  const lines = text.split('\n');
  lines.pop();
  const [header, ...records] = lines;
  writeFileSync(file, zlib.gzipSync([header, ...edit(records)].join('\n') + '\n'));
}

export async function reseal(outDir: string, changed: string[], url: string, slot: string): Promise<void> {
  const updates: { path: string; sha256: string; bytes: number; rows?: number; root?: string }[] = [];
  for (const rel of changed) {
    const file = path.join(outDir, rel);
    const gz = readFileSync(file);
    const raw = zlib.gunzipSync(gz);
    const m = new MerkleBuilder();
    let header = true;
    const sp = new CsvRecordSplitter((r) => {
      if (header) header = false;
      else m.addRecord(r);
    });
    sp.push(raw);
    sp.end();
    const mpath = path.join(path.dirname(file), 'manifest.json');
    const man = JSON.parse(readFileSync(mpath, 'utf8')) as ManifestJson;
    const e = man.files.find((f) => f.name === path.basename(file))!;
    const blocks = m.blocks.map((b) => b.toString('hex'));
    Object.assign(e, { rows: m.size, bytes: gz.length, raw_bytes: raw.length, sha256: sha(gz) });
    e.merkle = { ...e.merkle, tree_size: m.size, root: m.root().toString('hex') };
    if (blocks.length) Object.assign(e.merkle, { block_size: 1024, block_roots: blocks });
    else {
      delete e.merkle.block_size;
      delete e.merkle.block_roots;
    }
    const text = JSON.stringify(man, null, 2) + '\n';
    writeFileSync(mpath, text);
    updates.push({ path: rel, sha256: e.sha256, bytes: gz.length, rows: e.rows, root: e.merkle.root });
    updates.push({ path: path.relative(outDir, mpath), sha256: sha(text), bytes: Buffer.byteLength(text) });
  }
  // Every batch index in chain order: manifest hashes, batch root, prev link.
  const bdir = path.join(outDir, '_batches');
  const idx = new Map<string, IndexJson>();
  for (const n of readdirSync(bdir).filter((n) => n.endsWith('.json'))) {
    const j = JSON.parse(readFileSync(path.join(bdir, n), 'utf8')) as IndexJson;
    idx.set(j.batch_id, j);
  }
  const next = new Map<string | null, IndexJson>();
  for (const j of idx.values()) next.set(j.prev?.batch_id ?? null, j);
  const batches: { id: string; sha256: string; root: string }[] = [];
  let prevSha: string | null = null;
  for (let cur = next.get(null); cur; cur = next.get(cur.batch_id)) {
    const roots: Buffer[] = [];
    for (const m of cur.manifests) {
      const text = readFileSync(path.join(outDir, m.path));
      m.sha256 = sha(text);
      const man = JSON.parse(text.toString()) as ManifestJson;
      m.rows = man.files.reduce((s, f) => s + f.rows, 0);
      for (const f of man.files) roots.push(Buffer.from(f.merkle.root, 'hex'));
    }
    cur.merkle = { ...cur.merkle, tree_size: roots.length, root: rootOf(roots).toString('hex') };
    if (cur.prev && prevSha) cur.prev.sha256 = prevSha;
    const text = JSON.stringify(cur, null, 2) + '\n';
    writeFileSync(path.join(bdir, `${cur.batch_id}.json`), text);
    prevSha = sha(text);
    batches.push({ id: cur.batch_id, sha256: prevSha, root: cur.merkle.root });
    updates.push({ path: `_batches/${cur.batch_id}.json`, sha256: prevSha, bytes: Buffer.byteLength(text) });
  }
  await withDb(url, async (c) => {
    for (const b of batches) await c.query(`UPDATE cdc_registry.batches SET index_sha256 = $3, merkle_root = $4 WHERE slot_name = $1 AND batch_id = $2`, [slot, b.id, b.sha256, b.root]);
    for (const u of updates) {
      await c.query(`UPDATE cdc_registry.files SET sha256 = $3, bytes = $4, rows = coalesce($5, rows), merkle_root = coalesce($6, merkle_root) WHERE slot_name = $1 AND path = $2`, [slot, u.path, u.sha256, u.bytes, u.rows ?? null, u.root ?? null]);
    }
  });
}
