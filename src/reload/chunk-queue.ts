/**
 * Who copies which chunks of an export, and under whose locks (reloader.ts copyAll). The first
 * worker locks every table of the run before the plan (workers.ts open) and keeps its locks until
 * every other worker is done: while it holds them, no DDL that conflicts with ACCESS SHARE (a
 * rewrite, TRUNCATE, a column change: race.ts) can commit on any table of the export. The other
 * workers lock only the tables of the group they are about to copy, with NOWAIT: 4 workers each
 * locking 500 tables up front were 14-45 ms of server CPU each before the first COPY (AMD EPYC,
 * R4), for locks that the first worker's already make safe.
 *
 * NOWAIT is refused when a DDL is queued behind the first worker's lock (the server puts a new
 * request behind a waiting one that conflicts with it:
 * https://www.postgresql.org/docs/current/explicit-locking.html, lock.c LockAcquireExtended and
 * its waitMask test). Waiting there instead would be a cycle through this process that the
 * server cannot see: the DDL waits for the first worker, which waits (here) for the others. A
 * refused group goes to the first worker, which holds every lock already; the others go on with
 * the groups they can lock.
 *
 * Pure: no database, no clock; reloader.ts runs it, test/unit/chunk-queue.test.ts proves it.
 */

export class ChunkQueue<T> {
  /** Groups another worker could not lock: the first worker's, before any new one. */
  private readonly refused: T[][] = [];
  /** Workers other than the first that have not left yet. */
  private others: number;
  /** The first worker, waiting for a refused group or for the others to leave. */
  private waiting: (() => void) | null = null;

  constructor(
    /** The chunks, in the order they are to be taken; taken from the front. */
    private readonly tasks: T[],
    /** How many workers share the queue (the first is worker 0). */
    private readonly workers: number,
    /** A worker's next group from the front of `tasks` (planner.ts takeGroup). */
    private readonly take: (tasks: T[], workers: number) => T[],
  ) {
    this.others = Math.max(0, workers - 1);
  }

  /**
   * Worker `i`'s next group, or null when it has no more to do: then a worker other than the
   * first must `leave`. The first worker takes refused groups before new ones and, when the queue
   * is empty, waits until every other worker has left (its locks cover their copies until then).
   * `stop()`: an error or a shutdown; every worker gets null at its next call.
   */
  async next(i: number, stop: () => boolean): Promise<T[] | null> {
    for (;;) {
      if (stop()) return null;
      if (i === 0 && this.refused.length) return this.refused.shift()!;
      if (this.tasks.length) return this.take(this.tasks, this.workers);
      if (i !== 0 || this.others === 0) return null;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  /** A group that a worker other than the first could not lock: the first worker copies it. */
  refuse(group: T[]): void {
    this.refused.push(group);
    this.wake();
  }

  /** A worker other than the first is done (its transaction ends; no more groups for it). */
  leave(): void {
    this.others = Math.max(0, this.others - 1);
    this.wake();
  }

  /** Wakes the first worker if it waits (an error elsewhere: it then sees `stop()`). */
  wake(): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  /** Whether the first worker waits for the others (its session idle in its transaction meanwhile). */
  get firstWaiting(): boolean {
    return this.waiting !== null;
  }

  /** Groups refused and not yet taken. */
  get refusedCount(): number {
    return this.refused.length;
  }
}
