/**
 * `pg-egress verify --from <dir|s3://bucket/prefix> [path] [--row N --proof out.json]` (issue 17):
 * the offline checks and the inclusion proof over an archive store, for files that are only in S3.
 * `path` is relative to the archive: none for the whole archive, a window folder
 * (`<schema>.<table>/<window>`), or a data file (`…/streaming.csv.gz`).
 */
import { promises as fsp } from 'node:fs';
import { EgressError, ExitCode } from '../errors.js';
import type { Config } from '../config/index.js';
import type { VerifyReport } from '../proof/verify.js';
import { buildProofFrom } from '../proof/proof-file.js';
import { checkProof } from '../proof/proof-check.js';
import { openStore } from '../archive/store.js';
import { verifyStore, verifyStoreWindow } from '../archive/verify-store.js';
import { anchorReferences } from './verify-anchors.js';
import { s3Options, type ArchiveFlags } from './rebuild.js';

export async function verifyFromCommand(
  target: string | undefined,
  o: ArchiveFlags & { row?: string; proof?: string; cfg?: Config },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const store = await openStore(o.from, s3Options(o));
  try {
    const rel = target?.replace(/^\/+|\/+$/g, '') ?? '';
    if (o.row !== undefined || o.proof !== undefined) {
      if (o.row === undefined || o.proof === undefined || !rel.endsWith('.csv.gz')) throw new EgressError('CONFIG_INVALID', 'a proof needs a data file (its path inside --from), --row N and --proof out.json');
      const src = {
        readSmall: async (r: string) => {
          const b = await store.readSmall(r);
          if (!b) throw new Error(`${store.label}/${r} is missing`);
          return b;
        },
        stream: (r: string) => store.stream(r),
      };
      const proof = await buildProofFrom(src, rel, Number(o.row), `${store.label}/${rel}`).catch((e: unknown) => {
        throw new EgressError('VERIFY_FAILED', `cannot build the proof: ${(e as Error).message}`);
      });
      if (o.cfg) proof.anchors = await anchorReferences(o.cfg, proof.batch.batch_id, proof.file, proof.manifest.path);
      try {
        checkProof(proof);
      } catch (e) {
        throw new EgressError('VERIFY_FAILED', `the proof does not verify: ${(e as Error).message}`);
      }
      await fsp.writeFile(o.proof, JSON.stringify(proof, null, 2) + '\n');
      out.write(`proof written to ${o.proof}: record ${proof.record.index} of ${store.label}/${proof.file}, batch ${proof.batch.batch_id}\n`);
      return ExitCode.OK;
    }
    let report: VerifyReport = { batches: 0, manifests: 0, files: 0, records: 0, problems: [] };
    if (!rel) report = await verifyStore(store);
    else if (rel.endsWith('.csv.gz')) await verifyStoreWindow(store, rel.split('/').slice(0, -1).join('/'), report);
    else await verifyStoreWindow(store, rel, report);
    if (report.problems.length) {
      out.write(`FAILED: ${report.problems.length} problem(s); the first: ${report.problems[0]}\n`);
      for (const p of report.problems.slice(1)) out.write(`  ${p}\n`);
      return ExitCode.VERIFY_FAILED;
    }
    out.write(`ok: ${report.batches} batch indexes and their chain, ${report.manifests} manifests, ${report.files} files, ${report.records} records in ${store.label} match their sha256 and Merkle roots\n`);
    return ExitCode.OK;
  } finally {
    store.close();
  }
}
