/**
 * The reload operation state machine (SPEC §6, §8). Pending operations are claimed together and
 * exported from one snapshot: a temporary slot's exported snapshot whose consistent point S is
 * the boundary (snapshot.ts); `reload.workers` connections import it and copy the tables in ctid
 * chunks, largest first (workers.ts, planner.ts). Each operation's files are placed and then
 * registered in one registry transaction that also marks the operation done (finalize.ts), so a
 * crash at any point leaves either no registered set or exactly one; an operation a dead process
 * was running is redone from a new snapshot. Streaming, and confirming the main slot, go on
 * meanwhile: the reloader has its own connections and never touches the replication stream.
 */
import { Waker } from '../waker.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError, isEgressError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { Registry } from '../registry/registry.js';
import type { BatchChain } from '../proof/chain.js';
import type { ReloadOp, ReloadRegistry } from '../registry/reloads.js';
import type { Db } from '../registry/tx.js';
import { sourceError } from '../source/connect.js';
import { loadTableDefs, type ServerInfo, type TableDef } from '../source/setup.js';
import { excludedColumns } from '../config/index.js';
import { createExportSnapshot, type ExportSnapshot } from './snapshot.js';
import { orderTasks, planChunks } from './planner.js';
import { ExportWorker, type ChunkResult, type ChunkTask } from './workers.js';
import { FinalizeQueue } from './finalize.js';
import path from 'node:path';
import { ensureDir } from '../output/atomic.js';

const PROGRESS_MS = 2000;

export interface ReloaderDeps {
  cfg: Config;
  log: Logger;
  db: Db;
  server: ServerInfo;
  registry: Registry;
  reloads: ReloadRegistry;
  /** Orders batches (flushes and reloads) into the hash chain. */
  chain: BatchChain;
}

interface TableInfo {
  op: ReloadOp;
  relid: number;
  kind: string;
  bytes: number;
  def: TableDef;
  columns: string[];
}

interface OpState {
  info: TableInfo;
  results: ChunkResult[];
  chunks: number;
  done: number;
  rows: number;
  rawBytes: number;
  finished: boolean;
  /** Which workers exported chunks of this table. */
  workers: Set<number>;
}

export class Reloader {
  private stopping = false;
  private readonly waker = new Waker();
  private loopDone: Promise<void> | null = null;
  private workers: ExportWorker[] = [];
  /** An error that must stop the daemon (output.dir unwritable). */
  fatal: EgressError | null = null;

  constructor(private readonly d: ReloaderDeps) {}

  start(): void {
    this.loopDone = this.loop();
  }

  wake(): void {
    this.waker.wake();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    for (const w of this.workers) await w.kill();
    await this.loopDone;
  }

  private sleep(ms: number): Promise<void> {
    return this.waker.sleep(ms);
  }

  private async loop(): Promise<void> {
    const { reloads, log } = this.d;
    try {
      const n = await reloads.resetRunning();
      if (n) log.warn({ operations: n }, 'reloads interrupted by a stop or crash are done again from a new snapshot');
    } catch (e) {
      log.warn({ err: String(e) }, 'could not reset interrupted reloads');
    }
    while (!this.stopping) {
      let ops: ReloadOp[];
      try {
        ops = await reloads.claimPending();
      } catch (e) {
        log.warn({ err: String(e) }, 'could not read reload requests; retrying');
        await this.sleep(2000);
        continue;
      }
      if (!ops.length) {
        await this.sleep(1000);
        continue;
      }
      const states = new Map<number, OpState>();
      try {
        await this.run(ops, states);
      } catch (e) {
        const err = isEgressError(e)
          ? e
          : (e as { code?: string }).code === '55P03'
            ? new EgressError('RELOAD_BLOCKED', 'a table of the export is locked by another session (waited 30 s for an ACCESS SHARE lock); trying again', { retryable: true })
            : sourceError(e, this.d.cfg.source, 'export');
        const again = this.stopping || err.retryable;
        for (const op of ops) {
          if (states.get(op.id)?.finished) continue;
          await reloads.end(op.id, again ? 'pending' : 'failed', err.message).catch(() => undefined);
        }
        if (err.code === 'OUTPUT_IO') {
          this.fatal = err;
          return;
        }
        if (!this.stopping) {
          log.error({ code: err.code, tables: ops.map((o) => `${o.schema}.${o.table}`), retry: again }, `reload failed: ${err.message}`);
          if (again) await this.sleep(5000);
        }
      } finally {
        for (const w of this.workers) await w.close();
        this.workers = [];
      }
    }
  }

  /** Which requested tables still exist and are published, with their size and definition. */
  private async inspect(ops: ReloadOp[]): Promise<TableInfo[]> {
    const { db, cfg, reloads } = this.d;
    const { rows } = await db.query<{ schema: string; table: string; relid: string; kind: string; bytes: string; published: string }>(
      `SELECT n.nspname AS schema, c.relname AS table, c.oid::text AS relid, c.relkind::text AS kind,
              pg_relation_size(c.oid)::text AS bytes,
              EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                      WHERE p.pubname = $3 AND pr.prrelid = c.oid)::text AS published
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN unnest($1::text[], $2::text[]) AS x(s, t) ON x.s = n.nspname AND x.t = c.relname
       WHERE c.relkind IN ('r', 'p')`,
      [ops.map((o) => o.schema), ops.map((o) => o.table), cfg.publication],
    );
    const found = new Map(rows.map((r) => [`${r.schema}\u0000${r.table}`, r]));
    const defs = new Map((await loadTableDefs(db, rows.map((r) => Number(r.relid)))).map((d) => [Number(d.relid), d]));
    const out: TableInfo[] = [];
    for (const op of ops) {
      const r = found.get(`${op.schema}\u0000${op.table}`);
      const def = r ? defs.get(Number(r.relid)) : undefined;
      if (!r || r.published !== 'true' || !def) {
        await reloads.end(op.id, 'cancelled', 'the table no longer exists or is not published');
        this.d.log.warn({ table: `${op.schema}.${op.table}` }, 'reload cancelled: the table no longer exists or is not published');
        continue;
      }
      const excluded = excludedColumns(cfg, op.schema, op.table);
      const columns = def.columns.filter((c) => !c.generated && !excluded.has(c.name)).map((c) => c.name);
      out.push({ op, relid: Number(r.relid), kind: r.kind, bytes: Number(r.bytes), def, columns });
    }
    return out;
  }

  private async run(ops: ReloadOp[], states: Map<number, OpState>): Promise<void> {
    const { cfg, log, reloads } = this.d;
    const tables = await this.inspect(ops);
    if (!tables.length) return;
    const live = tables.map((t) => t.op);
    const snap = await this.takeSnapshot(live);
    const takenAt = Date.now();
    const blockSize = 8192;
    const tasks: ChunkTask[] = [];
    try {
      const { rows } = await this.d.db.query<{ bs: string }>(`SELECT current_setting('block_size') AS bs`);
      const bs = Number(rows[0].bs) || blockSize;
      const planned = tables.map((t) => ({ key: t, bytes: t.bytes, chunks: planChunks({ tableBytes: t.bytes, blockSize: bs, chunkBytes: cfg.reload.chunkSize, splittable: t.kind === 'r' }) }));
      for (const p of planned) states.set(p.key.op.id, { info: p.key, results: [], chunks: p.chunks.length, done: 0, rows: 0, rawBytes: 0, finished: false, workers: new Set() });
      for (const o of orderTasks(planned)) {
        tasks.push({ opId: o.key.op.id, index: o.index, range: o.range, schema: o.key.op.schema, table: o.key.op.table, columns: o.key.columns, partitioned: o.key.kind === 'p' });
      }
      const n = Math.max(1, Math.min(cfg.reload.workers, tasks.length));
      const lockList = tables.map((t) => ({ schema: t.op.schema, table: t.op.table }));
      this.workers = [await ExportWorker.open(cfg, snap.name, lockList, '30s')];
      const more = await Promise.allSettled(Array.from({ length: n - 1 }, () => ExportWorker.open(cfg, snap.name, lockList, '1s')));
      for (const m of more) if (m.status === 'fulfilled') this.workers.push(m.value);
      if (this.workers.length < n) log.warn({ workers: this.workers.length, wanted: n }, 'a DDL is waiting on a table of this export: going on with fewer workers');
    } finally {
      // Every worker holds the snapshot now; the temporary slot may go.
      await snap.close();
    }
    await reloads.started(
      live.map((o) => o.id),
      snap.lsn,
      new Map([...states.values()].map((s) => [s.info.op.id, { chunks: s.chunks, tableBytes: s.info.bytes }])),
      this.workers.length,
    );
    log.info({ tables: live.map((o) => `${o.schema}.${o.table}`), lsn: formatLsn(snap.lsn), chunks: tasks.length, workers: this.workers.length }, 'reload started');

    const tmpDir = path.join(cfg.output.dir, '_tmp');
    await ensureDir(tmpDir, cfg.output.dirMode);
    let failed: unknown = null;
    // Tables are registered as they finish, many small ones per batch; workers go on meanwhile.
    const finalizer = new FinalizeQueue(this.d, snap.lsn, takenAt);
    const registering: Promise<void>[] = [];
    // One statement per round for the tables whose progress moved (an initial export of 500 tables
    // sent 500 UPDATEs every round, which queued behind the registrations on the same rows and
    // pool); tables whose chunks are all done are being registered and are left alone.
    const reported = new Map<number, number>();
    let reporting = false;
    const progress = setInterval(() => {
      if (reporting) return;
      const moved = [...states.values()].filter((s) => s.done < s.chunks && reported.get(s.info.op.id) !== s.rawBytes);
      if (!moved.length) return;
      for (const s of moved) reported.set(s.info.op.id, s.rawBytes);
      reporting = true;
      void reloads
        .progressMany(moved.map((s) => ({ id: s.info.op.id, rows: s.rows, rawBytes: s.rawBytes, chunksDone: s.done })))
        .catch(() => undefined)
        .finally(() => (reporting = false));
    }, PROGRESS_MS);
    try {
      await Promise.all(
        this.workers.map(async (w, wi) => {
          while (tasks.length && failed === null && !this.stopping) {
            const task = tasks.shift()!;
            const st = states.get(task.opId)!;
            try {
              const r = await w.copy(task, cfg, tmpDir, (n) => (st.rawBytes += n));
              st.results[task.index] = r;
              st.rows += r.rows;
              st.done++;
              st.workers.add(wi);
              if (st.done === st.chunks) {
                const { op, def, columns, relid } = st.info;
                registering.push(
                  finalizer.add({ op, def, columns, relid, parts: st.results, workers: st.workers.size }).then(
                    () => void (st.finished = true),
                    (e: unknown) => void (failed ??= e),
                  ),
                );
              }
            } catch (e) {
              failed ??= e;
            }
          }
        }),
      );
      await Promise.all(registering);
    } finally {
      clearInterval(progress);
    }
    if (failed !== null) throw failed;
    if (this.stopping) throw new EgressError('SOURCE_UNREACHABLE', 'stopped during the export', { retryable: true });
  }

  /** Waits for the export snapshot, telling (status, log) what it waits on. */
  private async takeSnapshot(ops: ReloadOp[]): Promise<ExportSnapshot> {
    const { cfg, log, reloads, server } = this.d;
    const ids = ops.map((o) => o.id);
    const major = Number(server.serverVersion.split('.')[0]);
    let warnedSlots = false;
    for (;;) {
      let settled = false;
      const pending = createExportSnapshot(cfg, major);
      pending.then(
        () => (settled = true),
        () => (settled = true),
      );
      let lastXid = '';
      while (!settled) {
        await Promise.race([pending.catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
        if (settled) break;
        const w = await this.oldestTransaction().catch(() => null);
        const msg = w ? `export snapshot waits for transaction ${w.xid} (pid ${w.pid}, running for ${w.age}) to end` : 'export snapshot waits for running transactions to end';
        await reloads.setWaiting(ids, msg).catch(() => undefined);
        if (w && w.xid !== lastXid) log.warn({ pid: w.pid, xid: w.xid, age: w.age }, msg);
        lastXid = w?.xid ?? '';
      }
      try {
        const s = await pending;
        await reloads.setWaiting(ids, null);
        return s;
      } catch (e) {
        if (isEgressError(e) && e.code === 'NO_FREE_SLOT' && !this.stopping) {
          const msg = 'waiting for a free replication slot for the export snapshot (raise max_replication_slots or drop an unused slot)';
          await reloads.setWaiting(ids, msg);
          if (!warnedSlots) log.warn(msg);
          warnedSlots = true;
          await this.sleep(5000);
          if (this.stopping) throw new EgressError('SOURCE_UNREACHABLE', 'stopped while waiting for a replication slot', { retryable: true });
          continue;
        }
        throw e;
      }
    }
  }

  private async oldestTransaction(): Promise<{ pid: string; xid: string; age: string } | null> {
    const { rows } = await this.d.db.query<{ pid: string; xid: string; age: string }>(
      `SELECT pid::text, backend_xid::text AS xid, date_trunc('second', now() - xact_start)::text AS age
       FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
       ORDER BY xact_start LIMIT 1`,
    );
    return rows[0] ?? null;
  }
}

export type { Lsn };
