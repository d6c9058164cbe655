/**
 * `pg-egress verify <file|folder> [--row N --proof out.json]` and `pg-egress verify-proof out.json`:
 * offline checks of what was exported (SPEC §9). Neither needs the database or the network.
 */
import { existsSync, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { EgressError, ExitCode } from '../errors.js';
import { verifyDataFile, verifyOutput, verifyWindow, type Manifest, type VerifyReport } from '../proof/verify.js';
import { buildProof } from '../proof/proof-file.js';
import { checkProof, ProofLinkError } from '../proof/proof-check.js';
import { printable } from '../config/patterns.js';
import type { Config } from '../config/index.js';
import { anchorReferences, verifyAnchors } from './verify-anchors.js';

/** The output folder a path belongs to: the nearest ancestor (or itself) with `_batches/`. */
function outputRoot(p: string): string | null {
  let d = path.resolve(p);
  for (let i = 0; i < 4; i++) {
    if (existsSync(path.join(d, '_batches'))) return d;
    d = path.dirname(d);
  }
  return null;
}

export async function verifyCommand(
  target: string,
  o: { row?: string; proof?: string; cfg?: Config },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  if (!existsSync(target)) throw new EgressError('NOT_FOUND_PATH', `${target} does not exist`);
  const report: VerifyReport = { batches: 0, manifests: 0, files: 0, records: 0, problems: [] };
  const st = statSync(target);
  if (o.row !== undefined || o.proof !== undefined) {
    if (o.row === undefined || o.proof === undefined || !st.isFile()) throw new EgressError('CONFIG_INVALID', 'a proof needs a data file, --row N and --proof out.json');
    const root = outputRoot(target);
    if (!root) throw new EgressError('NOT_FOUND_PATH', `${target} is not inside an output folder (no _batches/ above it)`);
    const proof = await buildProof(root, target, Number(o.row)).catch((e: unknown) => {
      throw new EgressError('VERIFY_FAILED', `cannot build the proof: ${(e as Error).message}`);
    });
    if (o.cfg) proof.anchors = await anchorReferences(o.cfg, proof.batch.batch_id, proof.file, proof.manifest.path);
    try {
      checkProof(proof);
    } catch (e) {
      throw new EgressError('VERIFY_FAILED', `the proof does not verify: ${(e as Error).message}`);
    }
    await fsp.writeFile(o.proof, JSON.stringify(proof, null, 2) + '\n');
    out.write(`proof written to ${o.proof}: record ${proof.record.index} of ${proof.file}, batch ${proof.batch.batch_id}\n`);
    return ExitCode.OK;
  }
  if (st.isFile()) {
    const manifest = JSON.parse(await fsp.readFile(path.join(path.dirname(target), 'manifest.json'), 'utf8')) as Manifest;
    const entry = manifest.files.find((f) => f.name === path.basename(target));
    if (!entry) throw new EgressError('VERIFY_FAILED', `${target} is not listed in its folder's manifest.json`);
    const r = await verifyDataFile(target, entry, report.problems);
    report.files = 1;
    report.records = r?.records ?? 0;
  } else if (existsSync(path.join(target, '_batches'))) {
    Object.assign(report, await verifyOutput(target));
  } else if (existsSync(path.join(target, 'manifest.json'))) {
    await verifyWindow(target, report);
  } else {
    for (const w of (await fsp.readdir(target)).sort()) if (existsSync(path.join(target, w, 'manifest.json'))) await verifyWindow(path.join(target, w), report);
  }
  let anchors = '';
  if (o.cfg && (o.cfg.anchors.s3 || o.cfg.anchors.near)) {
    const a = await verifyAnchors(o.cfg);
    // Data files output.retain removed locally are not missing: their S3 copies were checked just now.
    const s3Only = new Set([...a.s3Only].map((rel) => `${path.join(target, rel)}: missing (listed in its manifest)`));
    const before = report.problems.length;
    report.problems = report.problems.filter((p) => !s3Only.has(p));
    report.problems.push(...a.problems);
    anchors = `; anchors: ${a.s3Objects} S3 objects byte-identical, ${a.nearTokens} NEAR tokens naming their batch index${before > report.problems.length - a.problems.length ? `, ${before - (report.problems.length - a.problems.length)} files in S3 only (output.retain)` : ''}`;
  }
  if (report.problems.length) {
    out.write(`FAILED: ${report.problems.length} problem(s); the first: ${report.problems[0]}\n`);
    for (const p of report.problems.slice(1)) out.write(`  ${p}\n`);
    return ExitCode.VERIFY_FAILED;
  }
  out.write(`ok: ${report.batches} batch indexes and their chain, ${report.manifests} manifests, ${report.files} files, ${report.records} records match their sha256 and Merkle roots${anchors}\n`);
  return ExitCode.OK;
}

/**
 * Exit 0 when every link holds, 10 when one does not (named) or the proof file is not a proof
 * (malformed JSON included), 7 only when the file does not exist.
 */
export async function verifyProofCommand(file: string, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new EgressError('NOT_FOUND_PATH', `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const fail = (why: string) => {
    out.write(`NOT PROVEN: ${printable(why)}\n`);
    return ExitCode.VERIFY_FAILED;
  };
  let proof: unknown;
  try {
    proof = JSON.parse(text);
  } catch (e) {
    return fail(`proof file: ${file} is not valid JSON (${(e as Error).message})`);
  }
  try {
    const r = checkProof(proof);
    out.write(`PROVEN: ${r.proves.map(printable).join('\n  ')}\n`);
    out.write(`NOT CHECKED OFFLINE:\n  ${r.unchecked.map(printable).join('\n  ')}\n`);
    return ExitCode.OK;
  } catch (e) {
    if (e instanceof ProofLinkError) return fail(`broken link ${e.message}`);
    return fail(`proof file: ${(e as Error).message}`);
  }
}
