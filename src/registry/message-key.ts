/**
 * Reads the key that authenticates pg-egress's own WAL messages (cdc_registry.message_key,
 * sql/008). Only the registry's owner and the daemon's role (granted by `init --url`) can read it;
 * it never leaves the daemon's memory and is never logged.
 */
import { EgressError } from '../errors.js';
import { parseLsn } from '../lsn.js';
import type { MessageKey } from '../ddl/message-auth.js';
import type { Db } from '../db/tx.js';

export async function loadMessageKey(db: Db, role: string): Promise<MessageKey> {
  try {
    // Every value comes back as text on our connections (db/connect.ts): hex, then bytes.
    const { rows } = await db.query<{ key: string; created_lsn: string }>(`SELECT encode("key", 'hex') AS key, "created_lsn"::text AS created_lsn FROM "cdc_registry"."message_key"`);
    if (rows.length !== 1) throw new EgressError('INTERNAL', 'cdc_registry.message_key holds no key; run `pg-egress init` again to create it');
    const key = Buffer.from(rows[0].key, 'hex');
    if (key.length !== 32) throw new EgressError('INTERNAL', 'cdc_registry.message_key holds a key of the wrong length; please report this');
    return { key, createdLsn: parseLsn(rows[0].created_lsn) };
  } catch (e) {
    if ((e as { code?: string }).code === '42501') {
      throw new EgressError(
        'INSUFFICIENT_PRIVILEGE',
        `role "${role}" cannot read cdc_registry.message_key (the key that authenticates pg-egress's messages in the WAL): run \`pg-egress init --url <superuser url>\` again to grant it`,
      );
    }
    throw e;
  }
}
