/**
 * `pg-egress status`: slot lag, registered LSN, table modes, pending rows and anchors, data gaps,
 * tables left unpublished, registered files missing from disk. Reads the registry and the server's
 * views; the daemon's in-memory counters come from its status file, shown only while that daemon
 * still holds its lock (a dead daemon's pid and pending rows are not shown as live).
 */
import { describeCompression } from '../output/deflate.js';
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/index.js';
import { ExitCode } from '../errors.js';
import { connectClient, sourceError } from '../source/connect.js';
import { Registry, type Gap } from '../registry/registry.js';
import { describeHolder, lockHolder } from '../registry/lock.js';
import { missingFiles } from '../output/sweep.js';
import { AnchorQueue } from '../registry/anchors.js';
import { RetentionRegistry, type LocalSummary } from '../registry/retention.js';
import { describeRetain, formatLocal } from '../anchor/local-status.js';
import { statusFilePath } from '../daemon.js';
import { displayTable, printable } from '../config/patterns.js';
import { partitionInfo } from '../registry/partitions.js';
import { slotHealth } from '../source/failover.js';

export interface StatusReport {
  slot: { name: string; exists: boolean; active: boolean; confirmed_flush_lsn: string | null; wal_status: string | null };
  /** Failover slots (PostgreSQL 17+): src/source/failover.ts says what "synced" can mean from the primary. */
  failover: { supported: boolean; failover: boolean | null; synced: boolean; synchronized_standby_slots: { name: string; active: boolean; flushed_lsn: string | null; caught_up: boolean }[]; slotsync_workers: number; warnings: string[] };
  server_lsn: string;
  registered_lsn: string | null;
  lag_bytes: number | null;
  /** `leaf_of`: the partitioned root a leaf is exported for; `partitions`: a root's leaf count (it has no rows of its own). */
  tables: { table: string; mode: string; last_window: string | null; dropped: boolean; pending_rows: number | null; leaf_of: string | null; partitions: number | null }[];
  pending_anchors: number;
  /** `skipped`: queued for a target that is not configured any more (src/anchor/targets.ts). */
  anchors: { target: string; pending: number; failed: number; done: number; skipped: number; oldest_pending_s: number | null; last_error: string | null }[];
  daemon: { running: boolean; holder: string | null; pid: number | null; status_at: string | null };
  /** The deflate library and COPY path: the running daemon's (its status file), else this installation's. */
  compression: string;
  gaps: Gap[];
  unpublished: { table: string; reason: string }[];
  missing_files: { count: number; first: string[] };
  /** output.dir as a staging area (issue 17): what is still local, what waits for upload, output.retain. */
  local: (LocalSummary & { retain: string }) | null;
  reloads: {
    id: number;
    table: string;
    state: string;
    reason: string;
    rows: number | null;
    raw_bytes: number;
    chunks: number | null;
    chunks_done: number;
    snapshot_lsn: string | null;
    waiting_on: string | null;
    error: string | null;
    requested_at: string;
    finished_at: string | null;
  }[];
}

const MISSING_SHOWN = 20;

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
    const { rows: reg } = await client.query<{ v: string | null }>(`SELECT to_regclass('cdc_registry.gaps')::text AS v`);
    const hasRegistry = (await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'cdc_registry'`)).rowCount === 1;
    const hasGaps = reg[0].v !== null;
    const registry = new Registry(client, cfg.slot);
    const holder = await lockHolder(client, cfg.slot);
    let file: { pid: number; updated_at: string; pending_rows: Record<string, number>; compression?: string } | null = null;
    try {
      file = JSON.parse(await readFile(statusFilePath(cfg), 'utf8'));
    } catch {
      file = null;
    }
    const live = holder !== null && file !== null && holder.applicationName.includes(`pid=${file.pid}`);
    const pending = live ? file!.pending_rows : null;
    const tables = hasRegistry ? await registry.tables() : [];
    const parts = hasRegistry ? await partitionInfo(client, cfg.publication) : { leafOf: new Map<string, string>(), roots: new Map<string, number>() };
    const unpublished: StatusReport['unpublished'] = [];
    if (hasGaps) {
      const { rows } = await client.query<{ schema_name: string; table_name: string; identity: string; published: string }>(
        `SELECT t.schema_name, t.table_name, t.identity::text AS identity,
                EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                        WHERE p.pubname = $1 AND pr.prrelid = t.relid)::text AS published
         FROM "cdc_registry"."selected_tables"($1) t ORDER BY 1, 2`,
        [cfg.publication],
      );
      for (const r of rows) {
        if (r.published === 'true') continue;
        unpublished.push({
          table: displayTable(r.schema_name, r.table_name),
          reason: r.identity === 'true' ? 'not in the publication (pg-egress adds it at its next check)' : 'no primary key or replica identity (tables.no_identity: skip)',
        });
      }
    }
    const reloads: StatusReport['reloads'] = [];
    const { rows: r4 } = await client.query<{ v: string | null }>(`SELECT to_regclass('cdc_registry.window_seq')::text AS v`);
    if (r4[0].v !== null) {
      // Every operation that is not over, and the last ten that are.
      const { rows } = await client.query<Record<string, string | null>>(
        `(SELECT * FROM "cdc_registry"."reloads" WHERE slot_name = $1 AND state IN ('pending', 'running'))
         UNION ALL
         (SELECT * FROM "cdc_registry"."reloads" WHERE slot_name = $1 AND state NOT IN ('pending', 'running') ORDER BY id DESC LIMIT 10)
         ORDER BY id`,
        [cfg.slot],
      );
      for (const r of rows) {
        reloads.push({
          id: Number(r.id),
          table: displayTable(r.schema_name!, r.table_name!),
          state: r.state!,
          reason: r.reason!,
          rows: r.rows === null ? null : Number(r.rows),
          raw_bytes: Number(r.raw_bytes),
          chunks: r.chunks === null ? null : Number(r.chunks),
          chunks_done: Number(r.chunks_done),
          snapshot_lsn: r.snapshot_lsn,
          waiting_on: r.waiting_on,
          error: r.error,
          requested_at: r.requested_at!,
          finished_at: r.finished_at,
        });
      }
    }
    const h = await slotHealth(client, cfg);
    const retention = new RetentionRegistry(client, cfg.slot);
    // Files removed by output.retain (in S3 only) are not missing; a registry before migration 012 has none.
    const registered = hasRegistry ? await retention.localPaths().catch(() => registry.registeredPaths()) : new Set<string>();
    const local = hasRegistry ? await retention.summary().then((x) => ({ ...x, retain: describeRetain(cfg) }), () => null) : null;
    const missing = await missingFiles(cfg.output.dir, registered);
    return {
      slot: { name: cfg.slot, exists: s.length === 1, active: s[0]?.active === 'true', confirmed_flush_lsn: s[0]?.confirmed ?? null, wal_status: s[0]?.wal_status ?? null },
      failover: {
        supported: h.supported,
        failover: h.failover,
        synced: h.synced,
        synchronized_standby_slots: h.standbySlots.map((x) => ({ name: x.name, active: x.active, flushed_lsn: x.flushedLsn, caught_up: x.caughtUp })),
        slotsync_workers: h.slotsyncWorkers,
        warnings: h.warnings,
      },
      server_lsn: w[0].lsn,
      registered_lsn: hasRegistry ? ((await client.query<{ l: string }>(`SELECT registered_lsn::text AS l FROM "cdc_registry"."slot_state" WHERE slot_name = $1`, [cfg.slot])).rows[0]?.l ?? null) : null,
      lag_bytes: w[0].lag === null ? null : Number(w[0].lag),
      tables: tables.map((t) => {
        const name = `${t.schema}.${t.table}`;
        return {
          table: displayTable(t.schema, t.table),
          mode: t.mode,
          last_window: t.lastWindow,
          dropped: t.dropped,
          pending_rows: pending ? (pending[name] ?? 0) : null,
          leaf_of: parts.leafOf.get(`${t.schema}\u0000${t.table}`) ?? null,
          partitions: parts.roots.get(`${t.schema}\u0000${t.table}`) ?? null,
        };
      }),
      pending_anchors: hasRegistry ? await registry.pendingAnchors() : 0,
      anchors: hasRegistry ? await new AnchorQueue(client, cfg.slot).summary() : [],
      daemon: { running: holder !== null, holder: holder ? describeHolder(holder) : null, pid: live ? file!.pid : null, status_at: file?.updated_at ?? null },
      compression: (live ? file!.compression : undefined) ?? describeCompression(cfg.output.gzipLevel),
      gaps: hasGaps ? await registry.openGaps() : [],
      unpublished,
      missing_files: { count: missing.length, first: missing.slice(0, MISSING_SHOWN) },
      local,
      reloads,
    };
  } catch (e) {
    throw sourceError(e, cfg.source, 'read status');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** 0 all well; 6 the slot is missing or lost; 9 a gap, an unpublished table or a missing file. */
export function statusExitCode(r: StatusReport): ExitCode {
  if (!r.slot.exists || r.slot.wal_status === 'lost') return ExitCode.SLOT;
  if (r.gaps.length || r.unpublished.length || r.missing_files.count || r.anchors.some((a) => a.failed > 0) || r.reloads.some((o) => o.state === 'failed' && !r.reloads.some((l) => l.table === o.table && l.id > o.id && l.state === 'done'))) return ExitCode.ATTENTION;
  return ExitCode.OK;
}

export function formatStatus(r: StatusReport): string {
  const daemon = r.daemon.running
    ? `running: ${r.daemon.holder}`
    : `not running${r.daemon.status_at ? ` (last status file ${r.daemon.status_at})` : ''}`;
  const lines = [
    `slot            ${r.slot.name} (${r.slot.exists ? (r.slot.active ? 'active' : 'inactive') : 'MISSING'}${r.slot.wal_status ? `, wal ${r.slot.wal_status}` : ''})`,
    `failover        ${!r.failover.supported ? 'not supported (PostgreSQL 17+)' : r.failover.failover === null ? '-' : r.failover.failover ? `on, ${r.failover.synced ? 'synced to a standby' : 'NOT synced to a standby'}` : 'off'}${r.failover.synchronized_standby_slots.length ? ` (synchronized_standby_slots: ${r.failover.synchronized_standby_slots.map((x) => `${x.name}${x.active ? '' : ' inactive'}${x.caught_up ? '' : ' behind'}`).join(', ')})` : ''}`,
    ...r.failover.warnings.map((w) => `  warning: ${w}`),
    `server lsn      ${r.server_lsn}`,
    `confirmed lsn   ${r.slot.confirmed_flush_lsn ?? '-'}`,
    `registered lsn  ${r.registered_lsn ?? '-'}`,
    `lag             ${r.lag_bytes === null ? '-' : `${r.lag_bytes} bytes`}`,
    `pending anchors ${r.pending_anchors}${r.anchors.map((a) => ` | ${a.target}: ${a.pending} pending${a.oldest_pending_s !== null ? ` (oldest ${a.oldest_pending_s}s)` : ''}, ${a.failed} failed, ${a.done} done${a.skipped ? `, ${a.skipped} skipped (anchors.${a.target} not configured)` : ''}${a.last_error ? `, last error: ${a.last_error}` : ''}`).join('')}`,
    ...(r.local ? [`local files     ${formatLocal(r.local)}`] : []),
    `daemon          ${daemon}`,
    `compression     ${r.compression}`,
    '',
    'table'.padEnd(40) + 'mode'.padEnd(16) + 'last window'.padEnd(22) + 'pending rows'.padEnd(14) + 'partition',
    ...r.tables.map(
      (t) =>
        t.table.padEnd(40) +
        (t.dropped ? 'dropped' : t.partitions !== null ? 'root' : t.mode).padEnd(16) +
        (t.last_window ?? '-').padEnd(22) +
        (t.pending_rows === null ? '-' : String(t.pending_rows)).padEnd(14) +
        (t.leaf_of ? `leaf of ${t.leaf_of}` : t.partitions !== null ? `partitioned: ${t.partitions} leaves` : '-'),
    ),
  ];
  if (r.reloads.length) {
    lines.push('', 'reloads');
    for (const o of r.reloads) {
      const progress = o.state === 'running' ? ` ${o.rows ?? 0} rows, chunks ${o.chunks_done}/${o.chunks ?? '?'}` : o.state === 'done' ? ` ${o.rows} rows at ${o.snapshot_lsn}` : '';
      lines.push(`  #${o.id} ${o.table} ${o.state} (${o.reason})${progress}${o.waiting_on ? `: ${o.waiting_on}` : ''}${o.error && o.state !== 'done' ? `: ${o.error}` : ''}`);
    }
  }
  if (r.gaps.length) {
    lines.push('', `DATA GAPS (${r.gaps.length}): committed changes that are in no file`);
    for (const g of r.gaps) lines.push(`  #${g.id} ${g.kind} ${g.schema ? displayTable(g.schema, g.table ?? '') : 'all tables'} from ${g.lsnFrom ?? '-'} to ${g.lsnTo ?? 'now'} (${g.detectedAt}): ${g.detail}`);
  }
  if (r.unpublished.length) {
    lines.push('', `UNPUBLISHED TABLES (${r.unpublished.length}): selected by tables.include but not captured`);
    for (const u of r.unpublished) lines.push(`  ${u.table}: ${u.reason}`);
  }
  if (r.missing_files.count) {
    lines.push('', `MISSING FILES (${r.missing_files.count}): registered but not in output.dir`);
    for (const f of r.missing_files.first) lines.push(`  ${f}`);
  }
  // Values from the database (errors, gap details) may hold control characters: one line each.
  return lines.map(printable).join('\n') + '\n';
}
