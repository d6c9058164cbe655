/**
 * Self-contained inclusion proofs (SPEC §9): the record's bytes, its leaf index, the file's tree
 * size and root with the audit path, and the path from the file's root to its batch root, plus
 * the batch index's sha256 (what the anchors commit to). `verify-proof` checks one with no
 * database and no network (RFC 9162 §2.1.3.2 twice). No `pg` import.
 */
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { auditPathRanges, leafHash, MerkleBuilder, verifyInclusion } from './merkle.js';
import { forEachRecord, type BatchIndex, type Manifest } from './verify.js';

export interface ProofFile {
  format: 'pg-egress.proof/1';
  algorithm: 'rfc6962-sha256';
  file: string;
  record: { index: number; base64: string; text: string };
  file_tree: { size: number; root: string; audit_path: string[] };
  manifest: { path: string; sha256: string };
  batch: { batch_id: string; index_path: string; index_sha256: string; root: string; size: number; leaf_index: number; audit_path: string[] };
  anchors: Record<string, unknown> | null;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Audit path of leaf `m` among `leaves` (hashes), computed with one builder per path range. */
function pathOf(m: number, leaves: Buffer[]): Buffer[] {
  const ranges = auditPathRanges(m, leaves.length);
  return ranges.map((r) => {
    const b = new MerkleBuilder();
    for (let i = r.start; i < r.end; i++) b.addLeafHash(leaves[i]);
    return b.root();
  });
}

/** Builds the proof for record `row` (0-based, header excluded) of a data file under `outDir`. */
export async function buildProof(outDir: string, file: string, row: number): Promise<ProofFile> {
  const abs = path.resolve(file);
  const rel = path.relative(path.resolve(outDir), abs).split(path.sep).join('/');
  const dir = path.dirname(abs);
  const manifestText = await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8');
  const manifest = JSON.parse(manifestText) as Manifest;
  const entry = manifest.files.find((f) => f.name === path.basename(abs));
  if (!entry?.merkle) throw new Error(`${file} is not a data file listed with a Merkle root in its manifest`);
  const n = entry.merkle.tree_size;
  if (!Number.isInteger(row) || row < 0 || row >= n) throw new Error(`--row ${row} is not a record of ${file} (it has ${n}, numbered from 0)`);
  // One pass: the record itself and the roots of the ranges on its audit path.
  const ranges = auditPathRanges(row, n);
  const builders = ranges.map(() => new MerkleBuilder());
  let record: Buffer | null = null;
  await forEachRecord(abs, (rec, i) => {
    if (i === row) record = Buffer.from(rec);
    const h = leafHash(rec);
    for (let k = 0; k < ranges.length; k++) if (i >= ranges[k].start && i < ranges[k].end) builders[k].addLeafHash(h);
  });
  if (record === null) throw new Error(`${file}: record ${row} not found`);
  const rec: Buffer = record;
  const filePath = builders.map((b) => b.root());
  const indexPath = `_batches/${manifest.batch_id}.json`;
  const indexText = await fsp.readFile(path.join(outDir, indexPath), 'utf8');
  const index = JSON.parse(indexText) as BatchIndex;
  // The batch tree's leaves are its data files' roots, manifests in index order, files in each.
  const fileRoots: { rel: string; root: Buffer }[] = [];
  for (const m of index.manifests) {
    const mf = JSON.parse(await fsp.readFile(path.join(outDir, m.path), 'utf8')) as Manifest;
    for (const f of mf.files) if (f.merkle) fileRoots.push({ rel: `${path.posix.dirname(m.path)}/${f.name}`, root: Buffer.from(f.merkle.root, 'hex') });
  }
  const leafIndex = fileRoots.findIndex((f) => f.rel === rel);
  if (leafIndex < 0) throw new Error(`${rel} is not in batch index ${indexPath}`);
  const batchLeaves = fileRoots.map((f) => leafHash(f.root));
  const batchRoot = new MerkleBuilder();
  for (const l of batchLeaves) batchRoot.addLeafHash(l);
  return {
    format: 'pg-egress.proof/1',
    algorithm: 'rfc6962-sha256',
    file: rel,
    record: { index: row, base64: rec.toString('base64'), text: rec.toString('utf8') },
    file_tree: { size: n, root: entry.merkle.root, audit_path: filePath.map((p) => p.toString('hex')) },
    manifest: { path: `${path.posix.dirname(rel)}/manifest.json`, sha256: sha256(manifestText) },
    batch: {
      batch_id: index.batch_id,
      index_path: indexPath,
      index_sha256: sha256(indexText),
      root: batchRoot.root().toString('hex'),
      size: batchLeaves.length,
      leaf_index: leafIndex,
      audit_path: pathOf(leafIndex, batchLeaves).map((p) => p.toString('hex')),
    },
    anchors: null,
  };
}

/** Checks a proof offline; returns what it proves in plain words, or throws why it does not. */
export function checkProof(p: ProofFile): string[] {
  if (p.format !== 'pg-egress.proof/1' || p.algorithm !== 'rfc6962-sha256') throw new Error('not a pg-egress proof file (format or algorithm)');
  const record = Buffer.from(p.record.base64, 'base64');
  if (record.toString('utf8') !== p.record.text) throw new Error('the record text and its bytes differ');
  const hex = (a: string[]) => a.map((x) => Buffer.from(x, 'hex'));
  const fileRoot = Buffer.from(p.file_tree.root, 'hex');
  if (!verifyInclusion(leafHash(record), p.record.index, p.file_tree.size, hex(p.file_tree.audit_path), fileRoot)) {
    throw new Error(`record ${p.record.index} is NOT proven to be in ${p.file} (tree of ${p.file_tree.size}, root ${p.file_tree.root})`);
  }
  if (!verifyInclusion(leafHash(fileRoot), p.batch.leaf_index, p.batch.size, hex(p.batch.audit_path), Buffer.from(p.batch.root, 'hex'))) {
    throw new Error(`the root of ${p.file} is NOT proven to be in batch ${p.batch.batch_id} (root ${p.batch.root})`);
  }
  return [
    `record ${p.record.index} of ${p.file}: ${p.record.text}`,
    `is leaf ${p.record.index} of that file's RFC 6962 tree of ${p.file_tree.size} records, root ${p.file_tree.root};`,
    `that root is leaf ${p.batch.leaf_index} of batch ${p.batch.batch_id}'s tree of ${p.batch.size} file roots, root ${p.batch.root},`,
    `recorded in batch index ${p.batch.index_path} (sha256 ${p.batch.index_sha256}).`,
    p.anchors ? `anchors: ${JSON.stringify(p.anchors)}` : 'anchors: none recorded (compare the batch index sha256 with your copy or an anchor).',
  ];
}
