/**
 * Notices DDL capture switched off under the daemon. Two of pg-egress's event triggers (sql/008:
 * pg_egress_values_ddl_end, pg_egress_values_rewrite) turn a value-changing DDL — one that changes
 * existing rows with no row change in the WAL — into a reload at its position. A superuser can
 * `ALTER EVENT TRIGGER … DISABLE` or DROP them (say, to get a migration past them); a DDL made
 * meanwhile would change the source without a word in the archive. This check runs with the
 * publication's and reports each change of state as a lapse over an LSN range, which the caller
 * records as a `ddl_capture` gap and repairs by exporting the tables again: once when capture is
 * found off (what happened before), and once when it is found on again (what happened while it
 * was off). It never turns the triggers back on itself: that is the DBA's call.
 *
 * The other two (DDL text for ddl.sql, reload markers, drops) lose no row when off, since pgoutput
 * sends every schema change and the daemon's own check catches partition changes: a warning.
 * Triggers never installed (a registry created by a non-superuser) are the documented "DDL
 * capture is off" state, warned about at start, not a gap.
 * https://www.postgresql.org/docs/current/sql-altereventtrigger.html
 */
import type { Logger } from '../log.js';
import type { Lsn } from '../lsn.js';
import { eventTriggerState } from '../registry/migrate.js';
import type { Db } from '../db/tx.js';

/** The triggers without which a value-changing DDL goes unseen. */
const VALUE_TRIGGERS = ['pg_egress_values_ddl_end', 'pg_egress_values_rewrite'];

export interface CaptureLapse {
  /** Since when a DDL may have been missed: null = since the last check that found capture on. */
  from: Lsn | null;
  to: Lsn;
  /** The triggers found off; empty when capture is on again. */
  triggers: string[];
}

export class DdlCaptureWatch {
  /** Whether every trigger was in place once (missing ones count as off from then on). */
  private installed = false;
  /** Capture found off: from this LSN. */
  private offSince: Lsn | null = null;
  private warned = '';

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly walLsn: () => Promise<Lsn>,
  ) {}

  async check(): Promise<CaptureLapse | null> {
    const s = await eventTriggerState(this.db);
    if (s.missing.length === 0) this.installed = true;
    const off = [...s.disabled, ...(this.installed ? s.missing : [])];
    const others = off.filter((t) => !VALUE_TRIGGERS.includes(t)).join(', ');
    if (others !== this.warned) {
      this.warned = others;
      if (others) this.log.warn(`event triggers ${others} are disabled or dropped: no ddl.sql and no reload marker (COMMENT) is captured until a superuser runs ALTER EVENT TRIGGER <name> ENABLE`);
    }
    const values = off.filter((t) => VALUE_TRIGGERS.includes(t));
    if (!values.length) {
      if (this.offSince === null) return null;
      const from = this.offSince;
      this.offSince = null;
      return { from, to: await this.walLsn(), triggers: [] };
    }
    if (this.offSince !== null) return null; // still off, already reported
    this.offSince = await this.walLsn();
    return { from: null, to: this.offSince, triggers: values };
  }
}
