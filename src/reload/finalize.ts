/**
 * Places one reload operation's files and registers them (SPEC §3, §6): the parts go into a
 * window folder of the table (the window of the snapshot, named from the batch sequence shared
 * with flushes), with schema.yml, manifest.json (entries `type: full_reload`, `lsn: {start: S,
 * end: S}`) and a batch index; the intent is recorded before the first rename, and the files,
 * the batch and the operation's end are one registry transaction. Nothing here holds or waits
 * for a lock on the application's tables: the marker's comment is put back afterwards, by the
 * reloader, once every export worker has ended its transaction (reloader.ts).
 */
import type { Lsn } from '../lsn.js';
import { lsnHex } from '../lsn.js';
import { alignWindow, FILES, flushName, reloadPartName, tableFolder, windowName } from '../output/layout.js';
import { schemaYml } from '../output/documents.js';
import type { ReloadOp } from '../registry/reloads.js';
import { anchorTargets } from '../registry/anchors.js';
import { commitBatch, type BatchTable } from '../commit/batch-commit.js';
import { commitTarget } from '../commit/target.js';
import type { TableDef } from '../source/setup.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Db } from '../db/tx.js';
import type { Registry } from '../registry/registry.js';
import type { ReloadRegistry } from '../registry/reloads.js';
import type { BatchChain } from '../proof/chain.js';
import type { ServerInfo } from '../source/setup.js';
import type { ChunkResult } from './workers.js';

const IDENTITY: Record<string, 'default' | 'full' | 'index' | 'nothing'> = { d: 'default', f: 'full', i: 'index', n: 'nothing' };

/** What placing and registering an export needs (a part of the reloader's dependencies). */
export interface FinalizeDeps {
  cfg: Config;
  log: Logger;
  db: Db;
  server: ServerInfo;
  registry: Registry;
  reloads: ReloadRegistry;
  chain: BatchChain;
}

/** One table's finished export, ready to be placed and registered. */
export interface FinishedExport {
  op: ReloadOp;
  def: TableDef;
  columns: readonly string[];
  relid: number;
  parts: ChunkResult[];
  workers: number;
}

/** Tables registered in one batch at most while COPYs run (the batch index lists a manifest per table). */
export const GROUP_MAX = 200;
/** Once the COPYs are over: at most this many in one batch (what is left goes in as few as that allows). */
export const FLUSHED_GROUP_MAX = 2 * GROUP_MAX;

/**
 * How many of `waiting` tables the next group takes. While COPYs run, GROUP_MAX. Once they are
 * over, every group costs a registration and two syncs after the last COPY, on the export's
 * critical path (~60-80 ms each here): what is left goes in as few groups as FLUSHED_GROUP_MAX
 * allows, of equal size (300 left: one group, not 200 and 100).
 */
export function groupSize(waiting: number, flushed: boolean): number {
  if (!flushed) return Math.min(waiting, GROUP_MAX);
  return Math.ceil(waiting / Math.ceil(waiting / FLUSHED_GROUP_MAX));
}

/**
 * Finalizes tables as their exports finish, in groups of up to GROUP_MAX. A table copied alone
 * (a large one: its files fsynced as written) starts a group at once, with whatever else waits, so
 * it is registered the moment it is done. Small tables (copied several to a query, their files
 * not yet fsynced) wait until GROUP_MAX of them do, or until `flush()` (the COPYs are over; then groupSize): a
 * group of one small table placed while the COPYs ran took ~0.6-0.8 s of an initial export of 500
 * tables, while the others piled up behind it; and a group of many is made durable by one syncfs
 * (commit/sync-policy.ts). One group is placed at a time; the next one is placed while the one
 * before it registers (its registration queued first in the chain, so the batches register in
 * the order of their names). After the last COPY the last group's placing thus no longer waits
 * for the previous group's registry transaction (an initial export of 500 small tables here:
 * the first group of 200 was still registering when the COPYs ended).
 */
export class FinalizeQueue {
  private readonly queue: { item: FinishedExport; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  private flushed = false;
  /** Settles once the group being placed is placed (or has failed): the next one may start. */
  private placing: Promise<void> = Promise.resolve();

  constructor(
    private readonly d: FinalizeDeps,
    private readonly lsn: Lsn,
    private readonly takenAt: number,
    /** When this attempt of the export began (claimed), for the `ms` of the `reloaded` line. */
    private readonly startedAt: number,
    /** Settles once the export's start is recorded (ReloadRegistry.started) and its tables' folders made: nothing is registered before. */
    private readonly ready: Promise<void> = Promise.resolve(),
    /** Places and registers one group (unit tests give their own). */
    private readonly finalize: typeof finalizeReloads = finalizeReloads,
  ) {
    // Awaited only once a table is done: an export failing before that must not leave it unhandled.
    ready.catch(() => undefined);
  }

  /** Resolves once the table's export is registered. */
  add(item: FinishedExport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      void this.drain();
    });
  }

  /** Every table of the export has been added (or failed): what waits goes now. */
  flush(): void {
    this.flushed = true;
    void this.drain();
  }

  private due(): boolean {
    return this.flushed || this.queue.length >= GROUP_MAX || this.queue.some((q) => q.item.parts.some((p) => p.synced));
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length && this.due()) {
        await this.placing;
        // Tables that finished meanwhile join the group.
        const group = this.queue.splice(0, groupSize(this.queue.length, this.flushed));
        let placed!: () => void;
        const isPlaced = new Promise<void>((resolve) => (placed = resolve));
        const done = this.ready
          .then(() => this.finalize(this.d, group.map((g) => g.item), this.lsn, this.takenAt, this.startedAt, placed))
          .then(
            () => group.forEach((g) => g.resolve()),
            (e: unknown) => group.forEach((g) => g.reject(e)),
          );
        this.placing = Promise.race([isPlaced, done]);
      }
    } finally {
      this.running = false;
    }
  }
}

/** Placing one table's files runs this many tables at a time (each mostly waits on fsync). */
const PLACE_CONCURRENCY = 16;

/**
 * Places and registers the exports of one or more tables of the same snapshot as one batch: one
 * batch name (each table's files in its own folder of that name), one write intent, one batch
 * index listing every table's manifest, one registry transaction. Many small tables (an initial
 * export) thus cost one registration and one link of the chain together instead of one each, and
 * their files are written and fsynced side by side.
 */
export async function finalizeReloads(
  d: FinalizeDeps,
  items: FinishedExport[],
  lsn: Lsn,
  takenAt: number,
  startedAt: number,
  /** The batch's files are placed and its registration is queued in the chain (commitBatch). */
  onPlaced?: () => void,
): Promise<void> {
  const { cfg, registry, reloads, log } = d;
  const started = Date.now();
  const win = alignWindow(takenAt, cfg.batch.intervalMs);
  const batchId = flushName(win, await registry.nextBatchSeq(windowName(win)));
  const tables: BatchTable[] = items.map((it) => ({
    schema: it.op.schema,
    table: it.op.table,
    relid: it.relid,
    folder: tableFolder(it.op.schema, it.op.table),
    data: it.parts.map((p, i) => ({
      name: it.parts.length === 1 ? FILES.fullReload : reloadPartName(i),
      type: 'full_reload' as const,
      tmpPath: p.tmpPath,
      rows: p.rows,
      stats: p.stats,
      merkle: p.merkle,
      lsnStart: lsn,
      lsnEnd: lsn,
      synced: p.synced,
    })),
    small: [{ name: FILES.schema, type: 'schema', text: exportSchemaYml(d, it, lsn, takenAt) }],
    lsnStart: lsn,
    lsnEnd: lsn,
  }));
  const sum = (it: FinishedExport, f: (p: ChunkResult) => number) => it.parts.reduce((n, p) => n + f(p), 0);
  const done = await commitBatch(commitTarget(cfg, d.server, registry, d.chain), {
    kind: 'reload',
    batchId,
    windowStartMs: win,
    lsnStart: lsn,
    lsnEnd: lsn,
    tables,
    anchors: anchorTargets(cfg),
    concurrency: PLACE_CONCURRENCY,
    syncfs: true,
    // FinalizeQueue runs this once the export's folders are made (its `ready`, reloader.ts).
    foldersMade: true,
    onPlaced,
    register: async (c) => {
      await reloads.finishManyIn(
        c,
        batchId,
        items.map((it) => ({
          op: it.op,
          rows: sum(it, (p) => p.rows),
          rawBytes: sum(it, (p) => p.stats.rawBytes),
          chunks: it.parts.length,
          workers: it.workers,
          relid: it.relid,
        })),
      );
    },
  });
  log.debug({ batch: batchId, tables: items.length, synced: done.synced, dirty_mb: done.dirtyBytes === null ? null : Math.round(done.dirtyBytes / 2 ** 20), ms: Date.now() - started, steps: done.steps }, 'reload batch registered');
  for (let k = 0; k < items.length; k++) {
    const { op, parts } = items[k];
    const p = done.perTable[k];
    log.info({ table: `${op.schema}.${op.table}`, batch: batchId, reason: op.reason, rows: p.rows, raw_bytes: p.rawBytes, parts: parts.length, lsn: lsnHex(lsn), ms: Date.now() - startedAt, tables_in_batch: items.length }, 'reloaded');
  }
}

/** An export's schema.yml: the table's definition as of the snapshot, in the file's column order. */
function exportSchemaYml(d: FinalizeDeps, it: FinishedExport, lsn: Lsn, takenAt: number): string {
  const { def, columns, relid, op } = it;
  const byName = new Map(def.columns.map((c) => [c.name, c]));
  return schemaYml({
    schema: op.schema,
    table: op.table,
    oid: relid,
    replicaIdentity: IDENTITY[def.replicaIdentity] ?? 'default',
    primaryKey: def.primaryKey,
    columns: columns.map((n) => {
      const c = byName.get(n)!;
      return { name: n, type: c.type, typeOid: c.typeOid, nullable: c.nullable };
    }),
    generatedColumns: def.columns.filter((c) => c.generated).map((c) => c.name),
    source: { database: d.server.database, serverVersion: d.server.serverVersion, systemIdentifier: d.server.systemIdentifier },
    lsnStart: lsn,
    lsnEnd: lsn,
    generatedAt: new Date(takenAt),
  });
}
