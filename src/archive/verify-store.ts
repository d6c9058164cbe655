/**
 * `pg-egress verify --from <dir|s3://…>` (issue 17 item 2): the checks of src/proof/verify.ts over
 * an archive store, so that files that are only in S3 (removed locally by output.retain) are
 * checked where they are: every batch index and the chain between them, every manifest against
 * its index, every data file's sha256, record count and Merkle root (streamed once, never held in
 * memory or copied to disk), schema.yml/ddl.sql/partitions.yml against the manifest, each batch
 * root, and manifests that no batch index lists. Problems name `<archive>/<relative path>`.
 */
import { chainProblems, verifyDataStream, type BatchIndex, type Manifest, type VerifyReport } from '../proof/verify.js';
import { rootOf } from '../proof/merkle.js';
import { sha256 } from './catalog.js';
import type { ArchiveStore } from './store.js';

const parse = <T>(b: Buffer): T | null => {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    return null;
  }
};

/** One window (`<table folder>/<window>`): its data files and small documents; returns the data files' roots. */
export async function verifyStoreWindow(store: ArchiveStore, dir: string, report: VerifyReport): Promise<Buffer[] | null> {
  const label = (rel: string) => `${store.label}/${rel}`;
  const bytes = await store.readSmall(`${dir}/manifest.json`);
  const manifest = bytes ? parse<Manifest>(bytes) : null;
  if (!manifest) {
    report.problems.push(`${label(`${dir}/manifest.json`)}: ${bytes ? 'not valid JSON' : 'missing'}`);
    return null;
  }
  report.manifests++;
  const roots: Buffer[] = [];
  for (const f of manifest.files) {
    report.files++;
    let r: { root: Buffer; records: number } | null = null;
    try {
      r = await verifyDataStream(label(`${dir}/${f.name}`), await store.stream(`${dir}/${f.name}`), f, report.problems);
    } catch (e) {
      report.problems.push((e as Error).message);
    }
    if (r) {
      roots.push(r.root);
      report.records += r.records;
    } else if (f.merkle) roots.push(Buffer.from(f.merkle.root, 'hex'));
  }
  for (const doc of [manifest.schema_yml, manifest.ddl_sql, manifest.partitions_yml]) {
    if (!doc) continue;
    const b = await store.readSmall(`${dir}/${doc.name}`);
    if (!b) report.problems.push(`${label(`${dir}/${doc.name}`)}: missing (listed in its manifest)`);
    else if (sha256(b) !== doc.sha256) report.problems.push(`${label(`${dir}/${doc.name}`)}: sha256 differs from the manifest`);
  }
  return roots;
}

/** The whole archive, as verifyOutput checks an output folder. */
export async function verifyStore(store: ArchiveStore): Promise<VerifyReport> {
  const report: VerifyReport = { batches: 0, manifests: 0, files: 0, records: 0, problems: [] };
  const label = (rel: string) => `${store.label}/${rel}`;
  const indexes = new Map<string, { index: BatchIndex; sha256: string; file: string }>();
  for (const n of (await store.list('_batches')).filter((x) => x.endsWith('.json'))) {
    const b = await store.readSmall(`_batches/${n}`);
    const index = b ? parse<BatchIndex>(b) : null;
    if (!b || !index) {
      report.problems.push(`${label(`_batches/${n}`)}: ${b ? 'not valid JSON' : 'missing'}`);
      continue;
    }
    indexes.set(index.batch_id, { index, sha256: sha256(b), file: label(`_batches/${n}`) });
  }
  const seen = new Set<string>();
  for (const { index, file } of indexes.values()) {
    report.batches++;
    const roots: Buffer[] = [];
    for (const m of index.manifests) {
      seen.add(m.path);
      const b = await store.readSmall(m.path);
      if (!b) {
        report.problems.push(`${file}: lists ${m.path}, which is missing (a batch folder was deleted)`);
        continue;
      }
      if (sha256(b) !== m.sha256) report.problems.push(`${label(m.path)}: sha256 differs from batch index ${index.batch_id}`);
      const dir = m.path.split('/').slice(0, -1).join('/');
      const r = await verifyStoreWindow(store, dir, report);
      if (r) roots.push(...r);
    }
    if (index.merkle && rootOf(roots).toString('hex') !== index.merkle.root) report.problems.push(`${file}: batch root differs from its files' roots`);
  }
  report.problems.push(...chainProblems(indexes, label('_batches')));
  // Manifests that no batch index lists: added behind our back, or their batch index was deleted.
  for (const top of await store.list('')) {
    if (top.startsWith('_')) continue; // _batches, _owner.json, _confirmed.json
    for (const w of await store.list(top)) {
      const rel = `${top}/${w}/manifest.json`;
      if (!seen.has(rel) && (await store.readSmall(rel)) !== null) report.problems.push(`${label(rel)}: in no batch index (its batch index was deleted, or the folder was added)`);
    }
  }
  return report;
}
