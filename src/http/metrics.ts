/**
 * Prometheus metrics (prefix `pg_egress_`), read at scrape time from the daemon's state and the
 * registry, never updated on the hot path: the controller keeps plain counters, and each scrape
 * turns them into samples. Secrets never appear: labels are table names, ops, targets, codes.
 * https://github.com/siimots/prom-client
 */
import client from 'prom-client';
import type { DaemonState } from './state.js';
import type { Db } from '../db/tx.js';
import { anchorCounts, anchorLastSuccess, anchorOldestPending, reloadRows, tableModes } from '../registry/metrics.js';

const lsnNumber = (l: bigint): number => Number(l);

export function createMetrics(state: DaemonState, slot: string): client.Registry {
  const registry = new client.Registry();
  const g = (name: string, help: string, labelNames: string[], collect: (m: client.Gauge) => Promise<void> | void) =>
    new client.Gauge({ name: `pg_egress_${name}`, help, labelNames, registers: [registry], collect() {
      this.reset();
      return collect(this);
    } });
  // A registry read that fails (or no registry yet) leaves the gauge empty for this scrape.
  const query = async <T>(read: (db: Db, slot: string) => Promise<T[]>): Promise<T[]> => {
    if (!state.db) return [];
    try {
      return await read(state.db, slot);
    } catch {
      return [];
    }
  };

  g('up', '1 while the replication stream is connected and confirming', [], (m) => m.set(state.phase === 'streaming' ? 1 : 0));
  // Read from the controller itself: a flush registers in the background (BatchController.flush)
  // and counts itself in pg_egress_flushes then, while the main loop copies durableLsn into the
  // state only on its next turn; a scrape in between saw the flush without its LSN.
  g('registered_lsn', 'LSN up to which changes are in registered files', [], (m) => m.set(lsnNumber(state.controller?.durableLsn ?? state.registeredLsn)));
  g('confirmed_lsn', 'LSN the slot was last confirmed to', [], (m) => m.set(lsnNumber(state.confirmedLsn)));
  g('received_lsn', 'last LSN received from the server', [], (m) => m.set(lsnNumber(state.receivedLsn)));
  g('spooled_bytes', 'bytes of large transactions received in parts and held until their commit', [], (m) => {
    if (state.streamed) m.set(state.streamed.spooledBytes());
  });
  g('streamed_transactions', 'large transactions received in parts since start, by outcome', ['outcome'], (m) => {
    const st = state.streamed?.stats;
    if (!st) return;
    m.set({ outcome: 'committed' }, st.committed);
    m.set({ outcome: 'aborted' }, st.aborted);
  });
  g('source_lag_seconds', 'now minus the commit time of the last transaction seen', [], (m) => {
    const t = state.controller?.lastCommitMs;
    if (t != null) m.set(Math.max(0, (Date.now() - t) / 1000));
  });
  g('slot_wal_bytes', 'WAL the slot holds: retained (current - restart_lsn) and unconfirmed (current - confirmed_flush_lsn)', ['kind'], async (m) => {
    const rows = await query(async (db, slot) =>
      (
        await db.query<{ retained: string | null; unconfirmed: string | null }>(
          `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained,
                  pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS unconfirmed
           FROM pg_replication_slots WHERE slot_name = $1`,
          [slot],
        )
      ).rows,
    );
    if (rows[0]?.retained != null) m.set({ kind: 'retained' }, Number(rows[0].retained));
    if (rows[0]?.unconfirmed != null) m.set({ kind: 'unconfirmed' }, Number(rows[0].unconfirmed));
  });
  g('slot_failover', '1 when the slot is a failover slot (PostgreSQL 17+), 0 when not or before 17', [], (m) => {
    if (state.slotHealth) m.set(state.slotHealth.failover === true ? 1 : 0);
  });
  g('slot_synced', '1 when the slot is judged synchronised to a standby (README "Failover": what synced means)', [], (m) => {
    if (state.slotHealth) m.set(state.slotHealth.synced ? 1 : 0);
  });
  g('synchronized_standby_slots_set', '1 when synchronized_standby_slots is set on the primary (PostgreSQL 17+)', [], (m) => {
    if (state.slotHealth) m.set(state.slotHealth.standbySlotsSet ? 1 : 0);
  });
  g('rows', 'rows written to streaming files since start, by table and op', ['table', 'op'], (m) => {
    for (const [key, ops] of state.controller?.rowsByTable ?? []) for (const [op, n] of ops) m.set({ table: key.replace('\u0000', '.'), op }, n);
  });
  const stat = (name: string, help: string, pick: (s: NonNullable<DaemonState['controller']>['stats']) => number) =>
    g(name, help, [], (m) => {
      if (state.controller) m.set(pick(state.controller.stats));
    });
  stat('transactions', 'transactions written since start', (s) => s.transactions);
  stat('flushes', 'flushes registered since start', (s) => s.flushes);
  stat('files_written', 'files registered by flushes since start', (s) => s.files);
  g('bytes_written', 'bytes of files registered by flushes since start', ['kind'], (m) => {
    if (!state.controller) return;
    m.set({ kind: 'gzip' }, state.controller.stats.bytes);
    m.set({ kind: 'raw' }, state.controller.stats.rawBytes);
  });
  // Fed at scrape time, in its own collect (before its values are read), from the durations the
  // controller recorded: its _count always equals pg_egress_flushes of the same scrape.
  new client.Histogram({
    name: 'pg_egress_flush_duration_seconds',
    help: 'time to write and register a flush',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
    collect() {
      for (const s of state.controller?.flushSeconds.splice(0) ?? []) this.observe(s);
    },
  });
  g('reconnects', 'reconnects since start', [], (m) => m.set(state.reconnects));
  g('standby_status_sent', 'standby status updates sent to the server since start', [], (m) => m.set(state.statusSent));
  g('errors', 'errors by code since start', ['code'], (m) => {
    for (const [code, n] of state.errors) m.set({ code }, n);
  });
  new client.Counter({
    name: 'pg_egress_forged_messages_total',
    help: 'pg-egress:* logical messages dropped because pg-egress did not emit them (no or a wrong MAC), by prefix',
    labelNames: ['prefix'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [prefix, n] of state.forged.counts) this.inc({ prefix }, n);
    },
  });
  g('table_mode', '1 for each table in its mode (streaming, pending_reload, reloading)', ['table', 'mode'], async (m) => {
    for (const r of await query(tableModes)) m.set({ table: r.t, mode: r.mode }, 1);
  });
  g('reload_rows', 'rows exported by reloads that are not over, and by the last done one per table', ['table', 'state'], async (m) => {
    const rows = await query(reloadRows);
    for (const r of rows) m.set({ table: r.t, state: r.state }, Number(r.rows ?? 0));
  });
  g('anchor_queue', 'anchor queue entries by target and state', ['target', 'state'], async (m) => {
    for (const r of await query(anchorCounts)) {
      m.set({ target: r.target, state: r.state }, Number(r.n));
    }
  });
  g('anchor_oldest_pending_seconds', 'age of the oldest pending anchor by target', ['target'], async (m) => {
    for (const r of await query(anchorOldestPending)) m.set({ target: r.target }, Number(r.age));
  });
  g('anchor_last_success_timestamp_seconds', 'when each target last anchored a batch', ['target'], async (m) => {
    for (const r of await query(anchorLastSuccess)) m.set({ target: r.target }, Number(r.t));
  });
  return registry;
}
