/**
 * Before START_REPLICATION: the slot must not be in use. Our daemon lock is held, so a holder is
 * either a walsender of our own previous process that has not noticed its client died yet (it
 * goes within moments), or another consumer such as pg_recvlogical, which is the operator's to stop.
 * Only the first is waited for: our replication connections are named `pg-egress`
 * (application_name, src/db/connect.ts), so a holder named otherwise is refused at once.
 */
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import type { Db } from '../db/tx.js';

export async function waitSlotFree(db: Db, cfg: Config, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ pid: string | null; app: string | null; addr: string | null }>(
      `SELECT s.active_pid::text AS pid, a.application_name AS app, a.client_addr::text AS addr
       FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
       WHERE s.slot_name = $1 AND s.active`,
      [cfg.slot],
    );
    if (!rows.length) return;
    // No activity row (the holder is just ending): unknown, waited for like our own.
    const foreign = rows[0].app !== null && !rows[0].app.startsWith('pg-egress');
    if (foreign || Date.now() > deadline) {
      const r = rows[0];
      throw new EgressError(
        'SLOT_IN_USE',
        `replication slot "${cfg.slot}" is in use by server process ${r.pid}${r.app ? ` ("${r.app}"` + (r.addr ? ` from ${r.addr})` : ')') : ''}; stop that consumer, or set slot to another name`,
      );
    }
    await new Promise((res) => setTimeout(res, 250));
  }
}
