/**
 * The reload operation state machine (SPEC §6, §8). Pending operations are claimed together and
 * exported from one snapshot: a temporary slot's exported snapshot whose consistent point S is
 * the boundary (snapshot.ts); `reload.workers` connections import it and copy the tables in ctid
 * chunks, largest first (workers.ts, planner.ts). Each operation's files are placed and then
 * registered in one registry transaction that also marks the operation done (finalize.ts), so a
 * crash at any point leaves either no registered set or exactly one; an operation a dead process
 * was running is redone from a new snapshot. Streaming, and confirming the main slot, go on
 * meanwhile: the reloader has its own connections and never touches the replication stream.
 *
 * Locks (the application must never wait on us for longer than an export): the first worker takes
 * ACCESS SHARE on every table of the run, then the snapshot's catalog is compared with the
 * committed one (race.ts: a rewrite, TRUNCATE or column change that committed after the snapshot
 * means the export is redone from a new one); columns and sizes are read in that worker's session,
 * under its locks. Each worker ends its transaction as soon as the chunk queue is empty, so the
 * locks are gone before anything of the export's finish (files, registry, the marker's comment);
 * the comment is put back under a short lock_timeout and retried until it succeeds.
 */
import type pg from 'pg';
import { BackgroundLoop } from '../background-loop.js';
import { EgressError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { ReloadOp } from '../registry/reloads.js';
import { inspectClaimed } from './claimed.js';
import { takeSnapshot } from './snapshot-wait.js';
import { connectSnapshotClient } from './snapshot.js';
import { chunkHeapBytes, exportWorkers, orderTasks, parallelWays, planChunks, readsOnThread, sourceIsLocal, takeGroup } from './planner.js';
import { ExportWorker, type ChunkResult, type ChunkTask } from './workers.js';
import { DEFAULT_SHARED_BUFFERS, expectedChunks, WorkerConnections } from './preconnect.js';
import { FinalizeQueue, type FinalizeDeps } from './finalize.js';
import { ChunkQueue } from './chunk-queue.js';
import { reportProgress } from './progress.js';
import { CommentRestorer } from './comments.js';
import { planUnderLock, type PlannedTable, type TableInfo } from './plan-locked.js';
import { exportError, workerErrors } from './export-errors.js';
import type { ExportLockHolder } from '../http/export-locks.js';
import path from 'node:path';
import { availableParallelism } from 'node:os';
import { ensureDir, ensureDirsIn } from '../output/atomic.js';
import { tableFolder } from '../output/layout.js';
import { failpoint } from '../failpoints.js';
import type { Clock } from '../clock.js';

export interface ReloaderDeps extends FinalizeDeps {
  hooks?: ExportHooks;
  /** Names the window an export is placed in (src/clock.ts); the wall clock if unset. */
  now?: Clock;
}

/**
 * A seam for tests: `afterSnapshot` runs once the export's snapshot exists and before the first
 * worker locks the tables, the window in which a DDL can commit after the snapshot (race.ts).
 */
export interface ExportHooks {
  afterSnapshot?: (tables: string[]) => Promise<void>;
  /** Once every worker holds the snapshot, before the first COPY (the first worker's locks held). */
  beforeCopies?: (tables: string[]) => Promise<void>;
  /** A worker other than the first could not lock a group's tables (chunk-queue.ts). */
  refused?: (tables: string[]) => void;
}

interface OpState {
  info: PlannedTable;
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
  private readonly bg = new BackgroundLoop(() => this.loop());
  private workers: ExportWorker[] = [];
  private lockedTables: string[] = [];
  /** The running export's chunks (copyAll), for lockHolders. */
  private queue: ChunkQueue<ChunkTask> | null = null;
  /** An error that must stop the daemon (output.dir unwritable). */
  fatal: EgressError | null = null;

  private readonly comments: CommentRestorer;

  constructor(private readonly d: ReloaderDeps) {
    this.comments = new CommentRestorer(d.reloads, d.log);
  }

  start(): void {
    this.bg.start();
  }

  wake(): void {
    this.bg.wake();
  }

  async stop(): Promise<void> {
    await this.bg.stop({ interrupt: async () => { for (const w of this.workers) await w.kill(); } });
  }

  private get stopping(): boolean {
    return this.bg.stopping;
  }

  private sleep(ms: number): Promise<void> {
    return this.bg.sleep(ms);
  }

  /** The export sessions holding locks on the application's tables now. */
  lockHolders(): ExportLockHolder[] {
    // The first worker, idle while it waits for the others' COPYs, holds its locks for them.
    const waiting = this.queue?.firstWaiting ?? false;
    return this.workers
      .filter((w) => w.holdsLocks)
      .map((w) => ({ pid: w.pid, since: w.lockedAt, tables: this.lockedTables, peersCopying: w === this.workers[0] && waiting }));
  }

  /** Puts back the comments that reload markers replaced (comments.ts); only with no worker open. */
  private async restoreComments(now = false): Promise<void> {
    await this.comments.run(now, () => this.stopping);
  }

  private async loop(): Promise<void> {
    const { reloads, log } = this.d;
    try {
      const n = await reloads.resetRunning();
      if (n) log.warn({ operations: n }, 'reloads interrupted by a stop or crash are done again from a new snapshot');
    } catch (e) {
      log.warn({ err: String(e) }, 'could not reset interrupted reloads');
    }
    let races = 0;
    while (!this.stopping) {
      await this.restoreComments();
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
      const startedAt = Date.now();
      try {
        await this.run(ops, states, startedAt);
        races = 0;
      } catch (e) {
        const err = exportError(e, this.d.cfg);
        const again = this.stopping || err.retryable;
        for (const op of ops) {
          if (states.get(op.id)?.finished) continue;
          await reloads.end(op.id, again ? 'pending' : 'failed', err.message).catch((e2: unknown) => {
            log.warn({ reload: op.id, err: String(e2) }, 'could not record the end of a reload; it is redone at the next start');
          });
        }
        if (err.code === 'OUTPUT_IO') {
          this.fatal = err;
          return;
        }
        if (!this.stopping) {
          const tables = ops.map((o) => `${o.schema}.${o.table}`);
          if (err.code === 'RELOAD_RACE') log.warn({ tables }, err.message);
          else log.error({ code: err.code, tables, retry: again }, `reload failed: ${err.message}`);
          // A race is redone at once (the DDL has committed: we held the lock when we saw it),
          // backing off only when DDL keeps coming.
          races = err.code === 'RELOAD_RACE' ? races + 1 : 0;
          if (again) await this.sleep(races ? Math.min(5000, 100 * 2 ** (races - 1)) : 5000);
        }
      } finally {
        for (const w of this.workers) await w.close();
        this.workers = [];
      }
      await this.restoreComments(true);
    }
  }

  /** The ways an export can split (planner.ts parallelWays). */
  private ways(): number {
    return parallelWays(this.d.cfg.reload.workers, sourceIsLocal(this.d.cfg.source.host), availableParallelism());
  }

  private async run(ops: ReloadOp[], states: Map<number, OpState>, startedAt: number): Promise<void> {
    const { cfg } = this.d;
    // The snapshot's replication connection opens while the tables are read from the catalog and
    // the workers connect (snapshot.ts connectSnapshotClient); unused, it is closed below.
    let snapConn: Promise<pg.Client> | undefined = connectSnapshotClient(cfg);
    snapConn.catch(() => undefined);
    try {
      const found = await inspectClaimed(this.d, ops, () => this.wake());
      if (!found.length) return;
      const live = found.map((t) => t.op);
      // The workers' connections are made while the snapshot is taken (preconnect.ts); the block
      // size and shared_buffers are the usual ones here, the plan reads the server's.
      const ways = this.ways();
      const expected = expectedChunks(found.map((t) => ({ pages: t.pages, splittable: t.kind === 'r' })), 8192, cfg.reload.chunkSize, ways, DEFAULT_SHARED_BUFFERS);
      const small = found.every((t) => !readsOnThread(t.pages * 8192, t.kind === 'p'));
      const conns = new WorkerConnections(cfg, exportWorkers(cfg.reload.workers, ways, expected, small));
      // The tables' folders are made while the snapshot is taken and the workers connect, not in
      // their batches after the COPYs (ensureDirsIn: one after another on this thread, ~20 µs each;
      // on the next turn, once the connections' first bytes are sent). Nothing is registered
      // before (FinalizeQueue waits), so this fsync of output.dir keeps them. A failed table's
      // folder stays empty (nothing reads one without a manifest).
      const folders = new Promise<void>((resolve) => setImmediate(resolve)).then(() =>
        ensureDirsIn(cfg.output.dir, live.map((o) => tableFolder(o.schema, o.table)), cfg.output.dirMode),
      );
      folders.catch(() => undefined);
      try {
        const connected = snapConn;
        snapConn = undefined;
        await this.runOn(conns, found, live, states, startedAt, ways, connected, folders);
      } finally {
        await conns.close();
      }
    } finally {
      if (snapConn) await snapConn.then((c) => c.end()).catch(() => undefined);
    }
  }

  private async runOn(
    conns: WorkerConnections,
    found: TableInfo[],
    live: ReloadOp[],
    states: Map<number, OpState>,
    startedAt: number,
    /** What a table's share is divided by (planner.ts parallelWays), as the connections were counted. */
    ways: number,
    /** The snapshot's replication connection, opening since the export began (run). */
    snapConn: Promise<pg.Client>,
    /** The tables' folders, being made since the export began (run). */
    folders: Promise<void>,
  ): Promise<void> {
    const { cfg, log } = this.d;
    const snap = await takeSnapshot(this.d, this.bg, live, snapConn);
    const takenAt = (this.d.now ?? Date.now)();
    const tasks: ChunkTask[] = [];
    let closing: Promise<unknown> | undefined;
    let ready = false;
    // Workers opening while the first one plans (below), until they are taken or closed.
    let early: Promise<PromiseSettledResult<ExportWorker>[]> | null = null;
    try {
      const lockList = found.map((t) => ({ schema: t.op.schema, table: t.op.table }));
      this.lockedTables = lockList.map((t) => `${t.schema}.${t.table}`);
      await this.d.hooks?.afterSnapshot?.(this.lockedTables);
      // The others lock each group's tables as they take it (chunk-queue.ts); their lock_timeout
      // bounds only what a COPY locks besides its table (its TOAST table, a partition).
      const openOne = async () => ExportWorker.open(cfg, snap.name, [], '1s', await conns.take());
      const first = await ExportWorker.open(cfg, snap.name, lockList, '30s', await conns.take());
      this.workers = [first];
      // The other workers import the snapshot while the first one plans the chunks (the plan reads
      // the tables' definitions, ~0.1 s for 500 tables): as many as the connections made ahead for
      // the chunks expected.
      const earlyCount = conns.left;
      early = Promise.allSettled(Array.from({ length: earlyCount }, openOne));
      const { tables, blockSize, sharedBuffers } = await planUnderLock(this.d, first, found);
      // The server's page size (a build-time constant of the server) and shared_buffers, read with the plan.
      const bs = blockSize || 8192;
      const shareBytes = tables.reduce((sum, t) => sum + t.bytes, 0) / ways;
      const planned = tables.map((t) => ({ key: t, bytes: t.bytes, chunks: planChunks({ tableBytes: t.bytes, blockSize: bs, chunkBytes: cfg.reload.chunkSize, splittable: t.kind === 'r', shareBytes, sharedBuffers }) }));
      for (const p of planned) states.set(
        p.key.op.id,
        { info: p.key, results: [], chunks: p.chunks.length, done: 0, rows: 0, rawBytes: 0, finished: false, workers: new Set() },
      );
      for (const o of orderTasks(planned)) {
        tasks.push({ opId: o.key.op.id, index: o.index, range: o.range, schema: o.key.op.schema, table: o.key.op.table, columns: o.key.columns, partitioned: o.key.kind === 'p', heapBytes: chunkHeapBytes(o.range, o.key.bytes, bs) });
      }
      const n = exportWorkers(cfg.reload.workers, ways, tasks.length, tasks.every((t) => !readsOnThread(t.heapBytes, t.partitioned)));
      const opened = (await early).flatMap((m) => (m.status === 'fulfilled' ? [m.value] : []));
      early = null;
      // More than the plan has chunks for: their transactions end now.
      for (const w of opened.splice(n - 1)) await w.close();
      this.workers.push(...opened);
      // Fewer opened ahead than the plan asks for (a table larger than its statistics said).
      const more = await Promise.allSettled(Array.from({ length: Math.max(0, n - 1 - earlyCount) }, openOne));
      for (const m of more) if (m.status === 'fulfilled') this.workers.push(m.value);
      if (this.workers.length < n) log.warn({ workers: this.workers.length, wanted: n }, 'could not open every export worker: going on with fewer');
      ready = true;
    } finally {
      // The plan failed: the workers opened meanwhile end their transactions.
      if (early) for (const m of await early) if (m.status === 'fulfilled') await m.value.close();
      // Every worker holds the snapshot now; the temporary slot may go, and connections not
      // needed. They close while the COPYs start (a slot's drop is ~10-20 ms), awaited below.
      closing = Promise.all([snap.close(), conns.close()]);
      // The plan failed: closed before the error goes on (the export is tried again).
      if (!ready) await closing;
    }
    try {
      await this.d.hooks?.beforeCopies?.(this.lockedTables);
      await this.copyAll(live, states, tasks, snap.lsn, takenAt, startedAt, ways, folders);
    } finally {
      await closing;
    }
  }

  /** The export proper, once every worker holds the snapshot: the COPYs, their files, their registration. */
  private async copyAll(
    live: ReloadOp[],
    states: Map<number, OpState>,
    tasks: ChunkTask[],
    lsn: Lsn,
    takenAt: number,
    startedAt: number,
    ways: number,
    folders: Promise<void>,
  ): Promise<void> {
    const { cfg, log, reloads } = this.d;
    // Recorded while the first COPYs run (a round trip and a commit less before them); every
    // registration waits for it (FinalizeQueue), so a table is never done before it is started.
    const recorded = reloads.started(
      live.map((o) => o.id),
      lsn,
      new Map([...states.values()].map((s) => [s.info.op.id, { chunks: s.chunks, tableBytes: s.info.bytes }])),
      this.workers.length,
    );
    recorded.catch(() => undefined);
    const names = live.map((o) => `${o.schema}.${o.table}`);
    const seqParts = tasks.filter((t) => t.range.seq).length;
    log.info({ tables: names, lsn: formatLsn(lsn), chunks: tasks.length, seq_scan_parts: seqParts, workers: this.workers.length, split_ways: ways }, 'reload started');

    const tmpDir = path.join(cfg.output.dir, '_tmp');
    await ensureDir(tmpDir, cfg.output.dirMode);
    const errors: unknown[] = [];
    // Tables are registered as they finish, many small ones per batch; workers go on meanwhile.
    // Registering touches only the registry: no lock on an application table (the marker's comment
    // is put back after every worker has ended its transaction: restoreComments).
    const finalizer = new FinalizeQueue(this.d, lsn, takenAt, startedAt, Promise.all([recorded, folders]).then(() => undefined));
    const registering: Promise<void>[] = [];
    // Chunks whose file is written, waiting for its fsync (the worker is on its next COPY).
    const syncing: Promise<void>[] = [];
    // The registry's progress of each table, every 250 ms (progress.ts).
    const stopProgress = reportProgress(reloads, states);
    // The first worker's locks cover every copy until the others are done (chunk-queue.ts).
    const queue = new ChunkQueue(tasks, this.workers.length, takeGroup);
    this.queue = queue;
    const stop = () => errors.length > 0 || this.stopping;
    let refusals = 0;
    try {
      await Promise.all(
        this.workers.map(async (w, wi) => {
          try {
            for (let group = await queue.next(wi, stop); group; group = await queue.next(wi, stop)) {
              try {
                if (!(await w.lockGroup(group))) {
                  const tables = [...new Set(group.map((t) => `${t.schema}.${t.table}`))];
                  if (refusals++ === 0) log.info({ tables }, 'a DDL waits on a table of this export: the worker holding every lock copies it');
                  this.d.hooks?.refused?.(tables);
                  queue.refuse(group);
                  continue;
                }
                // Rows and bytes count as they pass, so progress moves during a chunk.
                const copied = await w.copy(group, cfg, tmpDir, (task, bytes, rows) => {
                  const st = states.get(task.opId)!;
                  st.rawBytes += bytes;
                  st.rows += rows;
                });
                for (const { result: r, durable } of copied) {
                  await failpoint('export-after-chunk');
                  const task = r.task;
                  const st = states.get(task.opId)!;
                  // Counted once durable: a table is registered when every part is fsynced.
                  syncing.push(durable.then(
                    () => {
                      st.results[task.index] = r;
                      st.done++;
                      st.workers.add(wi);
                      if (st.done === st.chunks) {
                        const { op, def, columns, relid } = st.info;
                        registering.push(
                          finalizer.add({ op, def, columns, relid, parts: st.results, workers: st.workers.size }).then(
                            () => void (st.finished = true),
                            (e: unknown) => void errors.push(e),
                          ),
                        );
                      }
                    },
                    (e: unknown) => void errors.push(e),
                  ));
                }
              } catch (e) {
                errors.push(e);
                queue.wake();
              }
            }
          } finally {
            // No more work for this worker: end its transaction now, releasing its locks, before
            // anything of the export's finish (another worker may still be copying).
            if (wi !== 0) queue.leave();
            await w.close();
          }
        }),
      );
      log.debug({ chunks: states.size, ms: Date.now() - startedAt }, 'export copies done');
      // Every registration starts in a `syncing` callback: once those settled, `registering` is complete.
      await Promise.all(syncing);
      log.debug({ ms: Date.now() - startedAt }, 'export files durable');
      finalizer.flush();
      await Promise.all(registering);
    } finally {
      this.queue = null;
      // Whatever happened, nothing queued waits for more (flush is idempotent).
      finalizer.flush();
      stopProgress();
    }
    if (errors.length) throw workerErrors(errors, cfg);
    await recorded;
    if (this.stopping) throw new EgressError('SOURCE_UNREACHABLE', 'stopped during the export');
  }

  /** Waits for the export snapshot, telling (status, log) what it waits on. */

}

export type { Lsn };
