/**
 * How an export's finished tables are grouped into batches (src/reload/finalize.ts groupSize):
 * GROUP_MAX while COPYs run; once they are over, as few groups as FLUSHED_GROUP_MAX allows. And
 * how FinalizeQueue runs the groups: one placed at a time, the next placed while the one before
 * registers, each table's promise settled by its own group.
 */
import { describe, expect, it } from 'vitest';
import { FinalizeQueue, FLUSHED_GROUP_MAX, GROUP_MAX, groupSize, type FinalizeDeps, type FinishedExport, type finalizeReloads } from '../../src/reload/finalize.js';

/** The groups `n` waiting tables make, one groupSize after another. */
function groups(n: number, flushed: boolean): number[] {
  const out: number[] = [];
  while (n > 0) {
    const k = groupSize(n, flushed);
    expect(k).toBeGreaterThan(0);
    out.push(k);
    n -= k;
  }
  return out;
}

describe('groupSize', () => {
  it('takes GROUP_MAX at most while the COPYs run', () => {
    expect(groupSize(GROUP_MAX, false)).toBe(GROUP_MAX);
    expect(groupSize(GROUP_MAX + 1, false)).toBe(GROUP_MAX);
    expect(groupSize(3, false)).toBe(3);
  });
  it('once they are over, what is left goes in as few groups as FLUSHED_GROUP_MAX allows, of equal size', () => {
    expect(groups(300, true)).toEqual([300]);
    expect(groups(FLUSHED_GROUP_MAX, true)).toEqual([FLUSHED_GROUP_MAX]);
    expect(groups(FLUSHED_GROUP_MAX + 1, true)).toEqual([201, 200]);
    expect(groups(1000, true)).toEqual([334, 333, 333]);
    expect(groups(1, true)).toEqual([1]);
    for (let n = 1; n <= 2000; n++) {
      const g = groups(n, true);
      expect(g.reduce((a, b) => a + b, 0)).toBe(n);
      expect(Math.max(...g)).toBeLessThanOrEqual(FLUSHED_GROUP_MAX);
      expect(g.length).toBe(Math.ceil(n / FLUSHED_GROUP_MAX));
    }
  });
});

/** A finished small table (its file not yet fsynced, so it waits for a group). */
const table = (id: number) => ({ op: { id }, parts: [{ synced: false }] }) as unknown as FinishedExport;

/** Turns of the event loop until `cond` holds (at most 1,000). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

/**
 * A finalizeReloads that records what it does: placing (a few turns of the loop), then its
 * registration, which waits until the test releases it (as the chain would for the batch before).
 */
function fakeFinalize(fail: Set<number> = new Set()) {
  const events: string[] = [];
  const release = new Map<number, () => void>();
  let n = 0;
  let placing = 0;
  let mostPlacing = 0;
  const finalize: typeof finalizeReloads = async (_d, items, _lsn, _takenAt, _startedAt, onPlaced) => {
    const k = n++;
    events.push(`place ${k}: ${items.length}`);
    mostPlacing = Math.max(mostPlacing, ++placing);
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    placing--;
    if (fail.has(k)) throw new Error(`group ${k} failed`);
    events.push(`placed ${k}`);
    const registered = new Promise<void>((r) => release.set(k, r));
    onPlaced?.();
    await registered;
    events.push(`registered ${k}`);
  };
  return { finalize, events, release, mostPlacing: () => mostPlacing };
}

describe('FinalizeQueue', () => {
  const deps = {} as FinalizeDeps;

  it('places the next group while the one before registers, one placing at a time', async () => {
    const f = fakeFinalize();
    const q = new FinalizeQueue(deps, 0n, 0, 0, Promise.resolve(), f.finalize);
    // GROUP_MAX small tables: a group is due while the COPYs still run.
    const first = Array.from({ length: GROUP_MAX }, (_, i) => q.add(table(i)));
    await until(() => f.events.includes('placed 0'));
    // The COPYs end with more tables done: placed while group 0 is still registering.
    const rest = Array.from({ length: 50 }, (_, i) => q.add(table(GROUP_MAX + i)));
    q.flush();
    await until(() => f.events.includes('placed 1'));
    expect(f.events).toEqual([`place 0: ${GROUP_MAX}`, 'placed 0', 'place 1: 50', 'placed 1']);
    let firstDone = false;
    void Promise.all(first).then(() => (firstDone = true));
    f.release.get(1)!();
    f.release.get(0)!();
    await Promise.all([...first, ...rest]);
    expect(firstDone).toBe(true);
    expect(f.mostPlacing()).toBe(1);
  });

  it('a group that fails rejects its own tables only, and the next group goes on', async () => {
    const f = fakeFinalize(new Set([0]));
    const q = new FinalizeQueue(deps, 0n, 0, 0, Promise.resolve(), f.finalize);
    const first = Array.from({ length: GROUP_MAX }, (_, i) => q.add(table(i)).then(() => 'ok', (e: Error) => e.message));
    await until(() => f.events.includes(`place 0: ${GROUP_MAX}`));
    const rest = Array.from({ length: 3 }, (_, i) => q.add(table(GROUP_MAX + i)).then(() => 'ok', (e: Error) => e.message));
    q.flush();
    await until(() => f.events.includes('placed 1'));
    f.release.get(1)!();
    expect(new Set(await Promise.all(first))).toEqual(new Set(['group 0 failed']));
    expect(new Set(await Promise.all(rest))).toEqual(new Set(['ok']));
  });

  it('registers nothing before the export is recorded as started', async () => {
    const f = fakeFinalize();
    let start!: () => void;
    const q = new FinalizeQueue(deps, 0n, 0, 0, new Promise<void>((r) => (start = r)), f.finalize);
    const done = q.add(table(1));
    q.flush();
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(f.events).toEqual([]);
    start();
    await until(() => f.events.includes('placed 0'));
    f.release.get(0)!();
    await done;
    expect(f.events).toEqual(['place 0: 1', 'placed 0', 'registered 0']);
  });
});
