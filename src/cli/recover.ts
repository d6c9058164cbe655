/** `pg-egress recover --config cdc.yml --from <dir|s3://…>`: thin; the work is in src/archive/recover.ts. */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { recover } from '../archive/recover.js';
import { ExitCode } from '../errors.js';
import { formatLsn } from '../lsn.js';
import { s3Options, type ArchiveFlags } from './rebuild.js';

export async function recoverCommand(
  cfg: Config,
  log: Logger,
  o: ArchiveFlags,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const r = await recover(cfg, log, { from: o.from, s3: s3Options(o) });
  out.write(
    `recovered ${r.batches} batches (${r.files} files) from ${o.from}: registered LSN ${formatLsn(r.registeredLsn)}${r.s3Only ? `, ${r.s3Only} files are in S3 only` : ''}; start pg-egress run to continue from there\n`,
  );
  return ExitCode.OK;
}
