/**
 * `pg-egress verify --against-source <schema.table>... --config cdc.yml [--repair]`: thin; the
 * work is in src/archive/verify-source.ts. Exit 10 when a table differs.
 */
import { verifyAgainstSource } from '../archive/verify-source.js';
import type { Config } from '../config/index.js';
import { ExitCode } from '../errors.js';
import { s3Options, warnNoVerify, type ArchiveFlags } from './rebuild.js';

export async function verifyAgainstSourceCommand(
  cfg: Config,
  tables: string[],
  o: Partial<ArchiveFlags> & { repair?: boolean },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  warnNoVerify({ from: o.from ?? '', verify: o.verify });
  const r = await verifyAgainstSource(
    cfg,
    { tables, from: o.from, s3: o.from ? s3Options({ from: o.from, ...o }) : undefined, repair: o.repair, verify: o.verify !== false },
  );
  let differ = false;
  for (const v of r.tables) {
    if (v.equal) {
      out.write(`${v.table}: equal: ${v.rows} rows at snapshot ${r.snapshot}\n`);
      continue;
    }
    differ = true;
    const parts = [
      v.missing.length ? `missing from the archive: ${v.missing.join(', ')}` : '',
      v.extra.length ? `in the archive only: ${v.extra.join(', ')}` : '',
      v.changed.length ? `changed: ${v.changed.join(', ')}` : '',
    ].filter(Boolean);
    out.write(`${v.table}: DIFFERS at snapshot ${r.snapshot} (archive ${v.rows} rows, source ${v.sourceRows}): ${parts.join('; ') || 'rows differ'}\n`);
  }
  if (r.repairRequested.length) out.write(`reload requested for ${r.repairRequested.join(', ')}: the daemon exports them; verify again once they are registered\n`);
  return differ ? ExitCode.VERIFY_FAILED : ExitCode.OK;
}
