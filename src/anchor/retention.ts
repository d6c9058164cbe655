/**
 * Local retention (issue 17, `output.retain`): with S3 as the archive of record, output.dir is a
 * staging area. Beside the stream, on the registry pool, this loop removes a data file
 * (streaming.csv.gz, full_reload*.csv.gz) from output.dir once
 *   - its batch's S3 anchor is done: every file of the batch was uploaded and read back with the
 *     same sha256 (src/anchor/s3.ts),
 *   - every other configured anchor target of the batch (NEAR) is done,
 *   - it was registered more than output.retain ago,
 * and records the removal in the registry (cdc_registry.files.local_removed_at) right after.
 * Manifests, schema.yml, ddl.sql, partitions.yml and batch indexes stay (a few KB per window and
 * table): the chain and the manifests can still be checked locally, and NEAR reads the index.
 *
 * A file whose upload is pending or failed is never removed, whatever its age: while S3 is down,
 * output.dir grows, and shrinks again once the queue drains. A crash between the unlink and the
 * record leaves a registered file that is missing locally and uploaded; the next pass (or the
 * start-up check, src/output/lost-volume.ts) records it.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { Waker } from '../waker.js';
import { anchorTargets } from '../registry/anchors.js';
import { RetentionRegistry } from '../registry/retention.js';
import type { Db } from '../db/tx.js';

/** How often to look: often enough for a retain of seconds, rarely enough to cost nothing. */
export const retentionIntervalMs = (retainMs: number): number => Math.min(10_000, Math.max(1000, Math.floor(retainMs / 4)));

export class RetentionWorker {
  private stopping = false;
  private readonly waker = new Waker();
  private loopDone: Promise<void> | null = null;
  /** Files and bytes removed since start (logs). */
  removedFiles = 0;
  removedBytes = 0;

  constructor(
    private readonly cfg: Config,
    private readonly log: Logger,
    private readonly reg: RetentionRegistry,
  ) {}

  /** Nothing to do without S3 or with output.retain forever. */
  static enabled(cfg: Config): boolean {
    return cfg.anchors.s3 !== null && cfg.output.retainMs !== null;
  }

  start(): void {
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.waker.wake();
    await Promise.race([this.loopDone, new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  private async loop(): Promise<void> {
    const every = retentionIntervalMs(this.cfg.output.retainMs!);
    while (!this.stopping) {
      try {
        await this.pass();
      } catch (e) {
        this.log.warn({ err: (e as Error).message.split('\n')[0] }, 'local retention pass failed; retrying');
      }
      await this.waker.sleep(every);
    }
  }

  /** One pass: removes what may go, in chunks, and records it. Returns the number of files removed. */
  async pass(): Promise<number> {
    let total = 0;
    for (;;) {
      if (this.stopping) break;
      const files = await this.reg.removable(this.cfg.output.retainMs!, anchorTargets(this.cfg));
      if (!files.length) break;
      const done: number[] = [];
      const dirs = new Set<string>();
      let bytes = 0;
      for (const f of files) {
        const abs = path.join(this.cfg.output.dir, f.path);
        try {
          await fsp.unlink(abs);
        } catch (e) {
          // Already gone (removed before a crash, or with a lost volume): it is in S3 all the same.
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
        done.push(f.id);
        dirs.add(path.dirname(abs));
        bytes += f.bytes;
      }
      await this.reg.markRemoved(done);
      total += done.length;
      this.removedFiles += done.length;
      this.removedBytes += bytes;
      this.log.debug({ files: done.length, bytes, folders: dirs.size }, 'removed uploaded data files from output.dir (output.retain)');
      if (files.length < 500) break;
    }
    return total;
  }
}

/** The daemon's side: a running worker when S3 and output.retain say so, else null. */
export function startRetention(cfg: Config, log: Logger, db: Db): RetentionWorker | null {
  if (!RetentionWorker.enabled(cfg)) return null;
  const w = new RetentionWorker(cfg, log, new RetentionRegistry(db, cfg.slot));
  w.start();
  return w;
}
