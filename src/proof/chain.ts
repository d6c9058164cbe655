/**
 * The batch hash chain (SPEC §9, and beyond it: each batch index names the previous one). Flushes
 * and reload registrations both make batches, from different tasks; taking the predecessor and
 * registering the new batch must not interleave, or two batches would name the same predecessor.
 * One daemon per slot holds the lock (src/registry/lock.ts), so an in-process queue suffices; the
 * registry's unique index on (slot, prev_batch_id) refuses a fork all the same.
 */
import type { Registry } from '../registry/registry.js';

export type ChainLink = { batchId: string; sha256: string } | null;

export class BatchChain {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly registry: Registry) {}

  /** Runs `fn` with the predecessor; the next caller waits until `fn` has registered its batch. */
  run<T>(fn: (prev: ChainLink) => Promise<T>): Promise<T> {
    const p = this.tail.then(async () => fn(await this.registry.lastBatch()));
    this.tail = p.catch(() => undefined);
    return p;
  }
}
