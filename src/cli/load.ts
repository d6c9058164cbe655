/**
 * `pg-egress load --from <dir|s3://…> --into <postgres://…|duckdb:file> [--tables …]`: thin; the
 * work is in src/archive/load.ts.
 */
import { load } from '../archive/load.js';
import { redactTarget } from '../archive/targets.js';
import { ExitCode } from '../errors.js';
import { s3Options, warnNoVerify, type ArchiveFlags } from './rebuild.js';

export async function loadCommand(
  o: ArchiveFlags & { into: string; tables?: string[] },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  warnNoVerify(o);
  const r = await load({ from: o.from, s3: s3Options(o), into: o.into, tables: o.tables, verify: o.verify !== false });
  if (!r.applied.length) out.write(`nothing to load: ${redactTarget(o.into)} is at batch ${r.last ?? '(none)'}, the newest in the archive\n`);
  else out.write(`loaded ${r.applied.length} batches (${r.applied[0]} … ${r.applied[r.applied.length - 1]}), ${r.rows} rows, into ${redactTarget(o.into)}\n`);
  return ExitCode.OK;
}
