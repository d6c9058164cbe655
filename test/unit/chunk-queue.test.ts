/**
 * Who copies which chunks (src/reload/chunk-queue.ts): every chunk is handed out exactly once;
 * a group another worker could not lock goes to the first worker; the first worker gets null only
 * once every other worker has left (its locks cover their copies until then); a stop ends all.
 */
import { describe, expect, it } from 'vitest';
import { ChunkQueue } from '../../src/reload/chunk-queue.js';

/** Two at a time, like a group of small tables. */
const takeTwo = (q: number[]): number[] => q.splice(0, 2);
const never = () => false;

/** Resolves on the next turn of the event loop with whether `p` has settled. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ChunkQueue', () => {
  it('hands every chunk out once, in order, among the workers', async () => {
    const q = new ChunkQueue([1, 2, 3, 4, 5], 2, takeTwo);
    expect(await q.next(1, never)).toEqual([1, 2]);
    expect(await q.next(0, never)).toEqual([3, 4]);
    expect(await q.next(1, never)).toEqual([5]);
    expect(await q.next(1, never)).toBeNull();
    q.leave();
    expect(await q.next(0, never)).toBeNull();
  });

  it('passes the worker count to take', async () => {
    const seen: number[] = [];
    const q = new ChunkQueue([1, 2, 3], 3, (t: number[], n) => (seen.push(n), t.splice(0, 1)));
    await q.next(2, never);
    expect(seen).toEqual([3]);
  });

  it('the first worker waits, with the queue empty, until the others have left', async () => {
    const q = new ChunkQueue([1], 3, takeTwo);
    expect(await q.next(1, never)).toEqual([1]);
    expect(q.firstWaiting).toBe(false);
    const first = q.next(0, never);
    expect(await settled(first)).toBe(false);
    expect(q.firstWaiting).toBe(true);
    q.leave();
    expect(await settled(first)).toBe(false);
    q.leave();
    expect(await first).toBeNull();
    expect(q.firstWaiting).toBe(false);
  });

  it('a refused group goes to the first worker before any new one, even while it waits', async () => {
    const q = new ChunkQueue([1, 2, 3, 4, 5, 6], 2, takeTwo);
    const g = await q.next(1, never);
    q.refuse(g!);
    expect(q.refusedCount).toBe(1);
    expect(await q.next(0, never)).toEqual([1, 2]);
    expect(await q.next(1, never)).toEqual([3, 4]);
    expect(await q.next(0, never)).toEqual([5, 6]);
    // The queue is empty: the first worker waits; a group refused meanwhile wakes it.
    const waiting = q.next(0, never);
    expect(await settled(waiting)).toBe(false);
    q.refuse([3, 4]);
    expect(await waiting).toEqual([3, 4]);
    q.leave();
    expect(await q.next(0, never)).toBeNull();
  });

  it('a worker other than the first never gets a refused group', async () => {
    const q = new ChunkQueue([1, 2], 3, takeTwo);
    q.refuse((await q.next(1, never))!);
    expect(await q.next(2, never)).toBeNull();
    expect(await q.next(1, never)).toBeNull();
    expect(await q.next(0, never)).toEqual([1, 2]);
  });

  it('alone, the first worker never waits', async () => {
    const q = new ChunkQueue([1], 1, takeTwo);
    expect(await q.next(0, never)).toEqual([1]);
    expect(await q.next(0, never)).toBeNull();
  });

  it('a stop gives every worker null, and wake lets a waiting first worker see it', async () => {
    let stopped = false;
    const stop = () => stopped;
    const q = new ChunkQueue([1, 2, 3, 4], 2, takeTwo);
    expect(await q.next(1, stop)).toEqual([1, 2]);
    stopped = true;
    expect(await q.next(1, stop)).toBeNull();
    stopped = false;
    expect(await q.next(0, stop)).toEqual([3, 4]);
    const waiting = q.next(0, stop);
    expect(await settled(waiting)).toBe(false);
    stopped = true;
    q.wake();
    expect(await waiting).toBeNull();
  });
});
