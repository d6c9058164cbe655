/**
 * Connections for an export's workers, opened while its snapshot is being taken instead of one
 * after another once it exists: a connection start (TCP, authentication, a new backend) costs tens
 * of milliseconds, and the extra workers used to connect only after the first had locked the
 * tables and planned the chunks (~0.1 s of every export request). What runs on them is unchanged
 * (ExportWorker.open: the snapshot, the locks, in the same order); only the connecting moved.
 */
import type pg from 'pg';
import type { Config } from '../config/index.js';
import { connectClient } from '../db/connect.js';
import { planChunks } from './planner.js';

export const WORKER_APPLICATION = 'pg-egress reload worker';

export class WorkerConnections {
  private readonly pending: Promise<pg.Client | null>[];
  private readonly ended = new WeakSet<pg.Client>();

  constructor(cfg: Config, n: number) {
    this.pending = Array.from({ length: Math.max(0, n) }, () =>
      connectClient(cfg.source, { application_name: WORKER_APPLICATION }).then(
        (c) => {
          c.once('end', () => this.ended.add(c));
          return c;
        },
        // A failed connection is made again by ExportWorker.open, which reports its error.
        () => null,
      ),
    );
  }

  /** A connected client, or null (none left, its connection failed or ended): the caller connects itself. */
  async take(): Promise<pg.Client | null> {
    const c = await this.pending.shift();
    if (!c || !this.ended.has(c)) return c ?? null;
    await c.end().catch(() => undefined);
    return null;
  }

  /** Connections made ahead and not taken yet. */
  get left(): number {
    return this.pending.length;
  }

  /** Closes the connections nobody took. */
  async close(): Promise<void> {
    for (const p of this.pending.splice(0)) await (await p)?.end().catch(() => undefined);
  }
}

/** PostgreSQL's default shared_buffers (128 MB) in 8 KiB blocks: the estimate before the plan reads the server's. */
export const DEFAULT_SHARED_BUFFERS = 16384;

/**
 * How many workers an export will want, from the tables' sizes in pg_class (no lock; the plan
 * itself reads the sizes under the locks): the chunks the plan would make of those sizes
 * (planner.ts), with the same share of `ways`.
 */
export function expectedChunks(
  tables: { pages: number; splittable: boolean }[],
  blockSize: number,
  chunkBytes: number,
  ways: number,
  sharedBuffers?: number,
): number {
  const shareBytes = tables.reduce((n, t) => n + t.pages * blockSize, 0) / Math.max(1, ways);
  const chunks = (t: { pages: number; splittable: boolean }) =>
    planChunks({ tableBytes: t.pages * blockSize, blockSize, chunkBytes, splittable: t.splittable, shareBytes, sharedBuffers }).length;
  return tables.reduce((n, t) => n + chunks(t), 0);
}
