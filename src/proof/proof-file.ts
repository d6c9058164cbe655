/**
 * Self-contained inclusion proofs (SPEC §9), bound end to end: the record's bytes, its leaf index,
 * the file's tree size and root with the audit path, the exact bytes of the file's manifest (which
 * lists that root), the file root's position and audit path in its batch tree, the exact bytes of
 * the batch index (which lists the manifest's sha256 and states the batch root), and the anchor
 * references that pin the index's sha256. `verify-proof` (./proof-check.ts) recomputes every link
 * with no database and no network. No `pg` import.
 */
import { sha256Hex } from '../hash.js';
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { auditPathRanges, leafHash, MerkleBuilder } from './merkle.js';
import { PROOF_FORMAT } from './proof-check.js';
import { forEachRecordOf, type BatchIndex, type Manifest } from './verify.js';

export interface ProofFile {
  format: typeof PROOF_FORMAT;
  algorithm: 'rfc6962-sha256';
  file: string;
  record: { index: number; base64: string; text: string };
  file_tree: { size: number; root: string; audit_path: string[] };
  /** The manifest's exact bytes: it lists the file with its root (link 2). */
  manifest: { path: string; sha256: string; base64: string };
  /** `index_base64`: the batch index's exact bytes (links 3, 5, 6). */
  batch: {
    batch_id: string;
    index_path: string;
    index_sha256: string;
    root: string;
    size: number;
    leaf_index: number;
    audit_path: string[];
    index_base64: string;
  };
  anchors: ProofAnchors | null;
}

/** What pins the batch index's sha256 outside the archive. */
export interface ProofAnchors {
  s3?: { bucket: string; file_key: string; manifest_key: string; index_key: string };
  near?: { contract: string; token_id: string; tx_hash: string | null; reference: string; reference_hash: string };
}

const sha256 = sha256Hex;

/** Audit path of leaf `m` among `leaves` (hashes), computed with one builder per path range. */
function pathOf(m: number, leaves: Buffer[]): Buffer[] {
  const ranges = auditPathRanges(m, leaves.length);
  return ranges.map((r) => {
    const b = new MerkleBuilder();
    for (let i = r.start; i < r.end; i++) b.addLeafHash(leaves[i]);
    return b.root();
  });
}

/** Where a proof's documents and file are read from: output.dir, or an archive such as S3 (streamed). */
export interface ProofSource {
  readSmall(rel: string): Promise<Buffer>;
  stream(rel: string): Promise<Readable>;
}

/** Builds the proof for record `row` (0-based, header excluded) of a data file under `outDir`. */
export async function buildProof(outDir: string, file: string, row: number): Promise<ProofFile> {
  const root = path.resolve(outDir);
  const rel = path.relative(root, path.resolve(file)).split(path.sep).join('/');
  const local: ProofSource = {
    readSmall: (r) => fsp.readFile(path.join(root, r)),
    stream: async (r) => createReadStream(path.join(root, r)),
  };
  return buildProofFrom(local, rel, row, file);
}

/** The same for the file at `rel` in any archive; `file` names it in messages. */
export async function buildProofFrom(src: ProofSource, rel: string, row: number, file = rel): Promise<ProofFile> {
  const dirRel = path.posix.dirname(rel);
  const manifestBytes = await src.readSmall(`${dirRel}/manifest.json`);
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
  const entry = manifest.files.find((f) => f.name === path.posix.basename(rel));
  if (!entry?.merkle) throw new Error(`${file} is not a data file listed with a Merkle root in its manifest`);
  const n = entry.merkle.tree_size;
  if (!Number.isInteger(row) || row < 0 || row >= n) throw new Error(`--row ${row} is not a record of ${file} (it has ${n}, numbered from 0)`);
  // One pass: the record itself and the roots of the ranges on its audit path.
  const ranges = auditPathRanges(row, n);
  const builders = ranges.map(() => new MerkleBuilder());
  let record: Buffer | null = null;
  await forEachRecordOf(await src.stream(rel), (rec, i) => {
    if (i === row) record = Buffer.from(rec);
    const h = leafHash(rec);
    for (let k = 0; k < ranges.length; k++) if (i >= ranges[k].start && i < ranges[k].end) builders[k].addLeafHash(h);
  });
  if (record === null) throw new Error(`${file}: record ${row} not found`);
  const rec: Buffer = record;
  const filePath = builders.map((b) => b.root());
  const indexPath = `_batches/${manifest.batch_id}.json`;
  const indexBytes = await src.readSmall(indexPath);
  const index = JSON.parse(indexBytes.toString('utf8')) as BatchIndex;
  // The batch tree's leaves are its data files' roots, manifests in index order, files in each.
  const fileRoots: { rel: string; root: Buffer }[] = [];
  for (const m of index.manifests) {
    const mf = JSON.parse((await src.readSmall(m.path)).toString('utf8')) as Manifest;
    for (const f of mf.files) if (f.merkle) fileRoots.push({ rel: `${path.posix.dirname(m.path)}/${f.name}`, root: Buffer.from(f.merkle.root, 'hex') });
  }
  const leafIndex = fileRoots.findIndex((f) => f.rel === rel);
  if (leafIndex < 0) throw new Error(`${rel} is not in batch index ${indexPath}`);
  const batchLeaves = fileRoots.map((f) => leafHash(f.root));
  const batchRoot = new MerkleBuilder();
  for (const l of batchLeaves) batchRoot.addLeafHash(l);
  return {
    format: PROOF_FORMAT,
    algorithm: 'rfc6962-sha256',
    file: rel,
    record: { index: row, base64: rec.toString('base64'), text: rec.toString('utf8') },
    file_tree: { size: n, root: entry.merkle.root, audit_path: filePath.map((p) => p.toString('hex')) },
    manifest: { path: `${path.posix.dirname(rel)}/manifest.json`, sha256: sha256(manifestBytes), base64: manifestBytes.toString('base64') },
    batch: {
      batch_id: index.batch_id,
      index_path: indexPath,
      index_sha256: sha256(indexBytes),
      root: batchRoot.root().toString('hex'),
      size: batchLeaves.length,
      leaf_index: leafIndex,
      audit_path: pathOf(leafIndex, batchLeaves).map((p) => p.toString('hex')),
      index_base64: indexBytes.toString('base64'),
    },
    anchors: null,
  };
}
