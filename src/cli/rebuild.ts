/**
 * `pg-egress rebuild <schema.table>... --from <dir|s3://…> [--as-of <LSN|time>] --into <target>`:
 * thin; the work is in src/archive/rebuild.ts.
 */
import { rebuild } from '../archive/rebuild.js';
import { redactTarget } from '../archive/targets.js';
import { ExitCode } from '../errors.js';

export interface ArchiveFlags {
  from: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  verify?: boolean;
}

export const s3Options = (o: ArchiveFlags) => ({ endpoint: o.s3Endpoint, region: o.s3Region, forcePathStyle: o.s3PathStyle });

/** --no-verify is said loudly: nothing read is checked against its manifest or the chain. */
export function warnNoVerify(o: ArchiveFlags): void {
  if (o.verify === false) {
    process.stderr.write('pg-egress: WARNING: --no-verify: files are NOT checked against their manifests, Merkle roots or the batch chain; a changed or forged archive goes in unnoticed\n');
  }
}

export async function rebuildCommand(
  tables: string[],
  o: ArchiveFlags & { asOf?: string; into: string; target?: string; replace?: boolean },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  warnNoVerify(o);
  const res = await rebuild({
    tables,
    from: o.from,
    s3: s3Options(o),
    asOf: o.asOf,
    into: o.into,
    target: o.target,
    verify: o.verify !== false,
    replace: o.replace,
  });
  for (const r of res) {
    out.write(
      `rebuilt ${r.table} as ${r.target} in ${redactTarget(o.into)}${o.asOf ? ` as of ${o.asOf}` : ''}: ${r.rows} reload rows${r.reloadLsn ? ` (snapshot ${r.reloadLsn})` : ''}, ${r.changes} changes applied\n`,
    );
  }
  return ExitCode.OK;
}
