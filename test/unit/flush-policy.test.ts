/** The flush policy (src/batch/flush-policy.ts): pure functions of the state and a given clock. */
import { describe, expect, it } from 'vitest';
import { afterCommit, idleWaitMs, intervalDue, onBegin } from '../../src/batch/flush-policy.js';

const L = { intervalMs: 300_000, maxRows: 10, maxBytes: 1000 };
const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);

describe('flush policy', () => {
  it('Begin: a later window flushes what is pending; an earlier commit time stays in the open window', () => {
    expect(onBegin({ pending: false, windowStart: null }, T0 + 7_000, L)).toEqual({ windowStart: T0, flush: false });
    expect(onBegin({ pending: true, windowStart: T0 }, T0 + 299_999, L)).toEqual({ windowStart: T0, flush: false });
    expect(onBegin({ pending: true, windowStart: T0 }, T0 + 300_000, L)).toEqual({ windowStart: T0 + 300_000, flush: true });
    expect(onBegin({ pending: false, windowStart: T0 }, T0 + 900_000, L)).toEqual({ windowStart: T0 + 900_000, flush: false });
    // Commit times are not monotonic in WAL order: never back to an earlier window.
    expect(onBegin({ pending: true, windowStart: T0 + 300_000 }, T0 + 1, L)).toEqual({ windowStart: T0 + 300_000, flush: false });
  });

  it('Commit: a reload request flushes at once; otherwise a touched table at max_rows or max_bytes', () => {
    expect(afterCommit(1, [], L)).toBe('reload');
    expect(afterCommit(0, [{ rows: 9, rawBytes: 999 }], L)).toBeNull();
    expect(afterCommit(0, [{ rows: 1, rawBytes: 1 }, { rows: 10, rawBytes: 1 }], L)).toBe('size');
    expect(afterCommit(0, [{ rows: 1, rawBytes: 1000 }], L)).toBe('size');
  });

  it('interval: due only when idle, with something pending, once the window has ended', () => {
    const s = { inTransaction: false, pending: true, windowStart: T0 };
    expect(intervalDue(s, T0 + 299_999, L)).toBe(false);
    expect(intervalDue(s, T0 + 300_000, L)).toBe(true);
    expect(intervalDue({ ...s, inTransaction: true }, T0 + 400_000, L)).toBe(false);
    expect(intervalDue({ ...s, pending: false }, T0 + 400_000, L)).toBe(false);
    expect(intervalDue({ ...s, windowStart: null }, T0 + 400_000, L)).toBe(false);
  });

  it('idle wait: until the window ends, within [min, max]', () => {
    const s = { inTransaction: false, pending: true, windowStart: T0 };
    expect(idleWaitMs(s, T0 + 100_000, L, 50, 1_000_000)).toBe(200_000);
    expect(idleWaitMs(s, T0 + 100_000, L, 50, 10_000)).toBe(10_000);
    expect(idleWaitMs(s, T0 + 299_990, L, 50, 10_000)).toBe(50);
    expect(idleWaitMs({ ...s, pending: false }, T0, L, 50, 10_000)).toBe(10_000);
  });
});
