/**
 * Start-up check of the slot's position against what pg-egress itself did (issue 13, item 4).
 *
 * The daemon confirms the slot only to the registered LSN, or, with nothing pending, to a WAL end
 * it first wrote to output.dir/_confirmed.json (src/output/confirm-record.ts). A slot confirmed
 * past both was moved by someone else while the daemon was stopped (an active slot cannot be
 * advanced or dropped): `pg_replication_slot_advance`, or the slot dropped and created again (a
 * new slot starts at the WAL end). The changes in between are in no file: a gap, repaired by
 * exporting every published table again. A registry behind what pg-egress had registered (a
 * restore of cdc_registry from a backup) whose files are not on disk to adopt is a gap too.
 *
 * The other way round, a registry ahead of the slot (a failover to a standby whose synchronised
 * slot lags the registry, or a registry restored from a newer backup), is safe: streaming starts
 * at the registered LSN, the server skips what lies before it, and the slot holds the WAL.
 * Pure: decisions only; src/source/prepare.ts records them.
 */
import { formatLsn, type Lsn } from '../lsn.js';
import type { ConfirmRecordData } from '../output/confirm-record.js';

export interface SlotCheckInput {
  slot: string;
  slotConfirmed: Lsn;
  /** The registry's LSN after batches on disk were adopted. */
  registered: Lsn;
  record: ConfirmRecordData | null;
  /** A daemon that keeps the record has run for this slot before (cdc_registry.slot_state.confirm_tracking). */
  tracking: boolean;
}

export type SlotCheck =
  | { kind: 'ok'; registryAhead: boolean }
  | { kind: 'untracked' }
  | { kind: 'gap'; gapKind: 'slot_moved' | 'registry_behind'; from: Lsn; to: Lsn; detail: string };

export function checkSlotPosition(x: SlotCheckInput): SlotCheck {
  const C = formatLsn(x.slotConfirmed);
  const R = formatLsn(x.registered);
  if (x.slotConfirmed <= x.registered) return { kind: 'ok', registryAhead: x.slotConfirmed < x.registered };
  if (!x.tracking) return { kind: 'untracked' };
  const pairs = x.record?.pairs ?? [];
  const covering = pairs.filter((p) => x.slotConfirmed <= p.limit);
  if (covering.some((p) => x.registered >= p.registeredAt)) return { kind: 'ok', registryAhead: false };
  if (covering.length) {
    const needed = covering.reduce((m, p) => (p.registeredAt < m ? p.registeredAt : m), covering[0].registeredAt);
    return {
      kind: 'gap',
      gapKind: 'registry_behind',
      from: x.registered,
      to: x.slotConfirmed,
      detail: `the registry's LSN ${R} is behind what pg-egress had registered (${formatLsn(needed)}) and the files in between are not in output.dir (was cdc_registry restored from a backup?); replication slot "${x.slot}" is at ${C}, so changes committed between ${R} and ${C} are in no file`,
    };
  }
  const top = pairs[0]?.limit;
  const confirmed = top !== undefined ? `registered (${R}) or confirmed (${formatLsn(top)})` : `registered (${R}); output.dir has no record of what it confirmed (_confirmed.json)`;
  return {
    kind: 'gap',
    gapKind: 'slot_moved',
    from: x.registered,
    to: x.slotConfirmed,
    detail: `replication slot "${x.slot}" is confirmed at ${C}, past what pg-egress ${confirmed}: it was advanced (pg_replication_slot_advance) or dropped and created again outside pg-egress; changes committed between ${R} and ${C} are in no file`,
  };
}
