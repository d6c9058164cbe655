/**
 * The /metrics series of issue 17 (what deploy/prometheus/ alerts on), read at scrape time like
 * the rest (./metrics.ts): output.dir as a staging area (local bytes, oldest local window, what
 * waits for upload, the volume's size and free space), open gaps, failed reloads, readiness, and
 * the slot's lag in seconds.
 */
import { promises as fsp } from 'node:fs';
import client from 'prom-client';
import type { Config } from '../config/index.js';
import { RetentionRegistry, type LocalSummary } from '../registry/retention.js';
import type { Db } from '../db/tx.js';
import { failedReloadCount, openGapCount } from '../registry/health.js';
import type { DaemonState } from './state.js';

const STALE_MS = 30_000;

/**
 * Slot lag in seconds from scrapes: each scrape notes the server's WAL position and the time; the
 * lag is how long ago the server was at the position the slot is confirmed to now (0 when it is
 * caught up). Coarse (scrape interval) but needs no clock in the WAL.
 */
export class LagClock {
  private samples: { at: number; lsn: bigint }[] = [];
  constructor(private readonly keep = 2000) {}

  observe(now: number, serverLsn: bigint, confirmed: bigint): number {
    this.samples.push({ at: now, lsn: serverLsn });
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
    if (confirmed >= serverLsn) return 0;
    // The oldest sample the slot has not reached yet: the slot is behind since then.
    const behind = this.samples.find((s) => s.lsn > confirmed);
    return behind ? Math.max(0, (now - behind.at) / 1000) : 0;
  }
}

export function addArchiveMetrics(registry: client.Registry, state: DaemonState, cfg: Config): void {
  const g = (name: string, help: string, labelNames: string[], collect: (m: client.Gauge) => Promise<void> | void) =>
    new client.Gauge({
      name: `pg_egress_${name}`,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        try {
          await collect(this);
        } catch {
          // A registry that does not answer: the series is absent this scrape (pg_egress_ready says why).
        }
      },
    });
  const db = () => state.db;
  // The three local_* series of one scrape share one summary query.
  let cached: { at: number; p: Promise<LocalSummary> } | null = null;
  const summary = (d: Db): Promise<LocalSummary> => {
    if (!cached || Date.now() - cached.at > 1000) cached = { at: Date.now(), p: new RetentionRegistry(d, cfg.slot).summary() };
    return cached.p;
  };
  g('ready', '1 when /ready would answer 200 (streaming and confirming), else 0', [], (m) => m.set(state.phase === 'streaming' && Date.now() - state.lastStatusAt <= STALE_MS ? 1 : 0));
  const clock = new LagClock();
  g('slot_lag_seconds', 'how long ago the server was at the LSN the slot is confirmed to (0: caught up)', [], async (m) => {
    const d = db();
    if (!d) return;
    const { rows } = await d.query<{ cur: string; conf: string | null }>(
      `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text AS cur, (confirmed_flush_lsn - '0/0'::pg_lsn)::text AS conf FROM pg_replication_slots WHERE slot_name = $1`,
      [cfg.slot],
    );
    if (!rows[0] || rows[0].conf === null) return;
    m.set(clock.observe(Date.now(), BigInt(rows[0].cur.split('.')[0]), BigInt(rows[0].conf.split('.')[0])));
  });
  g('gaps_open', 'data gaps recorded and not yet repaired (pg-egress status lists them)', [], async (m) => {
    const d = db();
    if (d) m.set(await openGapCount(d, cfg.slot));
  });
  g('reloads_failed', 'tables whose last reload failed', [], async (m) => {
    const d = db();
    if (d) m.set(await failedReloadCount(d, cfg.slot));
  });
  g('local_bytes', 'bytes of registered files in output.dir: all, and data files (what output.retain removes)', ['kind'], async (m) => {
    const d = db();
    if (!d) return;
    const s = await summary(d);
    m.set({ kind: 'all' }, s.localBytes);
    m.set({ kind: 'data' }, s.localDataBytes);
    m.set({ kind: 's3_only' }, s.removedBytes);
  });
  g('local_oldest_window_timestamp_seconds', 'start of the oldest window with a data file still in output.dir', [], async (m) => {
    const d = db();
    if (!d) return;
    const s = await summary(d);
    if (s.oldestLocalWindow) m.set(Date.parse(s.oldestLocalWindow) / 1000);
  });
  g('awaiting_upload_bytes', 'bytes of files whose batch is not uploaded to S3 yet (pending or failed)', [], async (m) => {
    const d = db();
    if (d) m.set((await summary(d)).awaitingUploadBytes);
  });
  g('output_volume_bytes', 'the file system holding output.dir: size, free (for unprivileged users) and used bytes', ['kind'], async (m) => {
    const s = await fsp.statfs(cfg.output.dir);
    m.set({ kind: 'size' }, s.blocks * s.bsize);
    m.set({ kind: 'free' }, s.bavail * s.bsize);
    m.set({ kind: 'used' }, (s.blocks - s.bfree) * s.bsize);
  });
}
