/**
 * `pg-egress status`: slot lag, registered LSN, table modes, pending rows and anchors. Reads the
 * registry and the server's slot view; the daemon's in-memory counters come from its status file.
 */
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/index.js';
import { connectClient, sourceError } from '../source/connect.js';
import { Registry } from '../registry/registry.js';
import { statusFilePath } from '../daemon.js';

export interface StatusReport {
  slot: { name: string; exists: boolean; active: boolean; confirmed_flush_lsn: string | null; wal_status: string | null };
  server_lsn: string;
  registered_lsn: string | null;
  lag_bytes: number | null;
  tables: { table: string; mode: string; last_window: string | null; dropped: boolean; pending_rows: number }[];
  pending_anchors: number;
  daemon: { pid: number; updated_at: string } | null;
}

export async function statusReport(cfg: Config): Promise<StatusReport> {
  const client = await connectClient(cfg.source);
  try {
    const { rows: s } = await client.query<{ active: string; confirmed: string | null; wal_status: string | null }>(
      `SELECT active::text AS active, confirmed_flush_lsn::text AS confirmed, wal_status FROM pg_replication_slots WHERE slot_name = $1`,
      [cfg.slot],
    );
    const { rows: w } = await client.query<{ lsn: string; lag: string | null }>(
      `SELECT pg_current_wal_lsn()::text AS lsn,
              pg_wal_lsn_diff(pg_current_wal_lsn(), (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1))::text AS lag`,
      [cfg.slot],
    );
    const hasRegistry = (await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'cdc_registry'`)).rowCount === 1;
    const registry = new Registry(client, cfg.slot);
    let daemon: { pid: number; updated_at: string; pending_rows: Record<string, number> } | null = null;
    try {
      daemon = JSON.parse(await readFile(statusFilePath(cfg), 'utf8'));
    } catch {
      daemon = null;
    }
    const pending = daemon?.pending_rows ?? {};
    const tables = hasRegistry ? await registry.tables() : [];
    return {
      slot: { name: cfg.slot, exists: s.length === 1, active: s[0]?.active === 'true', confirmed_flush_lsn: s[0]?.confirmed ?? null, wal_status: s[0]?.wal_status ?? null },
      server_lsn: w[0].lsn,
      registered_lsn: hasRegistry ? (await client.query<{ l: string }>(`SELECT registered_lsn::text AS l FROM "cdc_registry"."slot_state" WHERE slot_name = $1`, [cfg.slot])).rows[0]?.l ?? null : null,
      lag_bytes: w[0].lag === null ? null : Number(w[0].lag),
      tables: tables.map((t) => ({ table: `${t.schema}.${t.table}`, mode: t.mode, last_window: t.lastWindow, dropped: t.dropped, pending_rows: pending[`${t.schema}.${t.table}`] ?? 0 })),
      pending_anchors: hasRegistry ? await registry.pendingAnchors() : 0,
      daemon: daemon ? { pid: daemon.pid, updated_at: daemon.updated_at } : null,
    };
  } catch (e) {
    throw sourceError(e, cfg.source, 'read status');
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function formatStatus(r: StatusReport): string {
  const lines = [
    `slot            ${r.slot.name} (${r.slot.exists ? (r.slot.active ? 'active' : 'inactive') : 'missing'}${r.slot.wal_status ? `, wal ${r.slot.wal_status}` : ''})`,
    `server lsn      ${r.server_lsn}`,
    `confirmed lsn   ${r.slot.confirmed_flush_lsn ?? '-'}`,
    `registered lsn  ${r.registered_lsn ?? '-'}`,
    `lag             ${r.lag_bytes === null ? '-' : `${r.lag_bytes} bytes`}`,
    `pending anchors ${r.pending_anchors}`,
    `daemon          ${r.daemon ? `pid ${r.daemon.pid}, status at ${r.daemon.updated_at}` : 'no status file'}`,
    '',
    'table'.padEnd(40) + 'mode'.padEnd(16) + 'last window'.padEnd(22) + 'pending rows',
    ...r.tables.map((t) => t.table.padEnd(40) + (t.dropped ? 'dropped' : t.mode).padEnd(16) + (t.last_window ?? '-').padEnd(22) + String(t.pending_rows)),
  ];
  return lines.join('\n') + '\n';
}
