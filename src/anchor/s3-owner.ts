/**
 * One owner per S3 prefix (issue 17 item 5), as for output.dir (src/output/owner.ts): the object
 * `<prefix>/_owner.json` names the deployment whose archive the prefix holds (system identifier,
 * database, slot). A start whose source or slot differs is refused with one line before anything
 * is uploaded; so is a start whose registry has no record of the slot while the prefix already
 * holds batches (the registry was dropped or lost): `pg-egress recover` rebuilds it from there.
 *
 * The check runs at start when S3 answers (src/source/prepare.ts), and otherwise before the anchor
 * worker's first upload (src/anchor/worker.ts): an S3 outage at start does not stop streaming.
 * S3 has no portable create-if-absent (s3rver ignores If-None-Match), so two deployments started
 * at the same instant against an empty prefix could both write the marker; the later one wins and
 * the other is refused at its next start.
 */
import { EgressError } from '../errors.js';
import type { Owner } from '../output/owner.js';
import type { S3Settings, S3Target } from './s3.js';
import { restoreConfirmRecord } from './confirm-mirror.js';

export const S3_OWNER_KEY = '_owner.json';

const describe = (o: Owner) => `slot "${o.slot}" of database "${o.database}" (system ${o.system_identifier})`;
export const s3Label = (s: S3Settings): string => `s3://${s.bucket}${s.prefix ? '/' + s.prefix : ''}`;

/** Checks, and on first use writes, the prefix's owner. Throws OUTPUT_OWNER (exit 8) when it is someone else's. */
export async function claimS3Prefix(target: Pick<S3Target, 'getSmall' | 'putSmall' | 'hasAny'>, s3: S3Settings, me: Owner, registryKnowsSlot: boolean): Promise<'claimed' | 'owned'> {
  const bytes = await target.getSmall(S3_OWNER_KEY);
  let owner: Owner | null = null;
  if (bytes) {
    try {
      owner = JSON.parse(bytes.toString('utf8')) as Owner;
    } catch {
      throw new EgressError('OUTPUT_OWNER', `${s3Label(s3)}/${S3_OWNER_KEY} is not valid JSON; nothing was uploaded: restore it or set anchors.s3.prefix to a prefix of its own`);
    }
  }
  if (owner && (owner.system_identifier !== me.system_identifier || owner.database !== me.database || owner.slot !== me.slot)) {
    throw new EgressError(
      'OUTPUT_OWNER',
      `anchors.s3 ${s3Label(s3)} belongs to ${describe(owner)}, not to ${describe(me)}; nothing was uploaded: set anchors.s3.prefix to a prefix of its own`,
    );
  }
  if (!registryKnowsSlot && (await target.hasAny('_batches'))) {
    throw new EgressError(
      'OUTPUT_OWNER',
      `anchors.s3 ${s3Label(s3)} holds batches but the registry (cdc_registry) has no record of slot "${me.slot}" (was the registry dropped?); nothing was uploaded: run \`pg-egress recover --config <cdc.yml> --from ${s3Label(s3)}\` to rebuild the registry from them, or set anchors.s3.prefix to a new prefix`,
    );
  }
  if (owner) return 'owned';
  await target.putSmall(S3_OWNER_KEY, Buffer.from(JSON.stringify(me, null, 2) + '\n'));
  return 'claimed';
}

/**
 * The start-up check (`run`): true when done, false when S3 did not answer (the anchor worker
 * checks before its first upload instead). A prefix owned by someone else throws.
 */
export async function checkS3OwnerAtStart(
  s3: S3Settings,
  me: Owner,
  registryKnowsSlot: boolean,
  output: { dir: string; fileMode: number },
  log: { warn(o: object, m: string): void; info(o: object, m: string): void },
): Promise<boolean> {
  const { createS3Target } = await import('./s3.js');
  const target = createS3Target(s3, { connectTimeoutMs: 5000, socketTimeoutMs: 10_000 });
  try {
    await claimS3Prefix(target, s3, me, registryKnowsSlot);
    // A new volume: what the daemon confirmed, from the S3 copy (src/anchor/confirm-mirror.ts).
    if (registryKnowsSlot && (await restoreConfirmRecord(target, output.dir, output.fileMode))) {
      log.info({ from: `${s3Label(s3)}/_confirmed.json` }, 'output.dir had no _confirmed.json: taken from its S3 copy');
    }
    return true;
  } catch (e) {
    if (e instanceof EgressError && e.code === 'OUTPUT_OWNER') throw e;
    log.warn({ err: (e as Error).message.split('\n')[0] }, `cannot check the owner of ${s3Label(s3)} now; it is checked before the first upload`);
    return false;
  } finally {
    target.close();
  }
}
