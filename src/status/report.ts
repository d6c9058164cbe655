/**
 * The status report of `pg-egress status` and `/status`: slot lag, registered LSN, table modes, pending rows and anchors, data gaps,
 * tables left unpublished, registered files missing from disk. Reads the registry and the server's
 * views; the daemon's in-memory counters come from its status file, shown only while that daemon
 * still holds its lock (a dead daemon's pid and pending rows are not shown as live).
 */
import { describeCompression } from '../output/deflate.js';
import type { Config } from '../config/index.js';
import { ExitCode } from '../errors.js';
import { connectClient, sourceError } from '../db/connect.js';
import { Registry, type Gap } from '../registry/registry.js';
import { describeHolder, lockHolder } from '../registry/lock.js';
import { missingFiles } from '../output/sweep.js';
import { AnchorQueue } from '../registry/anchors.js';
import { readStatusFile } from './file.js';
import { recentReloads, registeredLsnText, registryPresence, selectedTablesPublished } from '../registry/status.js';
import { displayTable } from '../config/patterns.js';
import { RetentionRegistry, type LocalSummary } from '../registry/retention.js';
import { describeRetain } from '../anchor/local-status.js';
import { partitionInfo } from '../registry/partitions.js';
import { slotHealth } from '../source/failover.js';

export interface StatusReport {
  slot: { name: string; exists: boolean; active: boolean; confirmed_flush_lsn: string | null; wal_status: string | null };
  /** Failover slots (PostgreSQL 17+): src/source/failover.ts says what "synced" can mean from the primary. */
  failover: {
    supported: boolean;
    failover: boolean | null;
    synced: boolean;
    synchronized_standby_slots: { name: string; active: boolean; flushed_lsn: string | null; caught_up: boolean }[];
    slotsync_workers: number;
    warnings: string[];
  };
  server_lsn: string;
  registered_lsn: string | null;
  lag_bytes: number | null;
  /** `leaf_of`: the partitioned root a leaf is exported for; `partitions`: a root's leaf count (it has no rows of its own). */
  tables: {
    table: string;
    mode: string;
    last_window: string | null;
    dropped: boolean;
    pending_rows: number | null;
    leaf_of: string | null;
    partitions: number | null;
  }[];
  pending_anchors: number;
  /** `skipped`: queued for a target that is not configured any more (src/anchor/targets.ts). */
  anchors: {
    target: string;
    pending: number;
    failed: number;
    done: number;
    skipped: number;
    oldest_pending_s: number | null;
    last_error: string | null;
  }[];
  daemon: { running: boolean; holder: string | null; pid: number | null; status_at: string | null };
  /**
   * Large transactions the running daemon receives in parts (PostgreSQL 14+) and holds in
   * output.dir/_tmp until their commit, as of its last status file; null when no daemon is live.
   */
  spooled: { transactions: number; bytes: number } | null;
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
    const present = await registryPresence(client);
    const hasRegistry = present.registry;
    const hasGaps = present.gaps;
    const registry = new Registry(client, cfg.slot);
    const holder = await lockHolder(client, cfg.slot);
    const file = await readStatusFile(cfg);
    const live = holder !== null && file !== null && holder.applicationName.includes(`pid=${file.pid}`);
    const pending = live ? file!.pending_rows : null;
    const tables = hasRegistry ? await registry.tables() : [];
    const parts = hasRegistry
      ? await partitionInfo(client, cfg.publication)
      : { leafOf: new Map<string, string>(), roots: new Map<string, number>() };
    const unpublished: StatusReport['unpublished'] = [];
    if (hasGaps) {
      for (const r of await selectedTablesPublished(client, cfg.publication)) {
        if (r.published) continue;
        unpublished.push({
          table: displayTable(r.schema, r.table),
          reason: r.identity ? 'not in the publication (pg-egress adds it at its next check)' : 'no primary key or replica identity (tables.no_identity: skip)',
        });
      }
    }
    const reloads: StatusReport['reloads'] = [];
    if (present.reloads) {
      // Every operation that is not over, and the last ten that are.
      for (const r of await recentReloads(client, cfg.slot)) {
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
        synchronized_standby_slots: h.standbySlots.map((x) => ({
          name: x.name,
          active: x.active,
          flushed_lsn: x.flushedLsn,
          caught_up: x.caughtUp,
        })),
        slotsync_workers: h.slotsyncWorkers,
        warnings: h.warnings,
      },
      server_lsn: w[0].lsn,
      registered_lsn: hasRegistry ? await registeredLsnText(client, cfg.slot) : null,
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
      daemon: {
        running: holder !== null,
        holder: holder ? describeHolder(holder) : null,
        pid: live ? file!.pid : null,
        status_at: file?.updated_at ?? null,
      },
      spooled: live ? { transactions: file!.spooled_transactions ?? 0, bytes: file!.spooled_bytes ?? 0 } : null,
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
