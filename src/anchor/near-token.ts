/**
 * The NEAR token id of a batch, apart from near.ts so that code naming tokens (the anchor worker,
 * `verify --config`) does not load near-api-js until it talks to NEAR.
 */
import { createHash } from 'node:crypto';
import { EgressError } from '../errors.js';

/** NEP-171 sets no limit on token ids; contracts pay storage per byte, so keep them short. */
export const TOKEN_ID_MAX = 128;

/**
 * The token id of a batch: `pg-egress:<system identifier>:<slot>:<batch id>`. The PostgreSQL
 * system identifier and the slot name identify the stream, the batch id (flush name) the batch
 * in it, so a retry of the same batch always yields the same id. Slot names are at most 63 of
 * [a-z0-9_] and flush names about 30 characters, so the readable form fits in 128; were it
 * longer, the id is `pg-egress:h:` and the base64url sha256 of the readable form (never equal to
 * a readable id: those have digits where this has `h`).
 */
export function nearTokenId(systemIdentifier: string, slot: string, batchId: string): string {
  if (!/^\d+$/.test(systemIdentifier)) throw new EgressError('INTERNAL', `NEAR anchor: system identifier must be decimal digits, got ${JSON.stringify(systemIdentifier)}`);
  if (!slot || slot.includes(':') || !batchId) throw new EgressError('INTERNAL', `NEAR anchor: bad slot or batch id for a token id (${JSON.stringify(slot)}, ${JSON.stringify(batchId)})`);
  const readable = `pg-egress:${systemIdentifier}:${slot}:${batchId}`;
  if (Buffer.byteLength(readable) <= TOKEN_ID_MAX) return readable;
  return `pg-egress:h:${createHash('sha256').update(readable).digest('base64url')}`;
}
