/**
 * When a flush happens (SPEC §3, §6): pure functions of the controller's state and the clock.
 *
 * - A transaction goes to the window of its commit time (aligned to batch.interval), or to the
 *   current window if that is later (commit times are not strictly monotonic in WAL order).
 * - A flush happens only between transactions: when a transaction of a later window begins, when
 *   the clock passes the window's end while idle (`intervalDue`), or after a commit that takes a
 *   table past batch.max_rows / batch.max_bytes or carries a reload request (`afterCommit`). A
 *   single transaction is never split across flushes, so a very large one makes one large file.
 */
import { alignWindow } from '../output/layout.js';

export interface PolicyLimits {
  intervalMs: number;
  maxRows: number;
  maxBytes: number;
}

/** What the policy sees of the controller between messages. */
export interface PolicyState {
  /** A transaction is open (no flush may happen). */
  inTransaction: boolean;
  /** Rows or DDL are waiting in open windows. */
  pending: boolean;
  /** Start of the open window (ms), or null before the first transaction. */
  windowStart: number | null;
}

/**
 * At a transaction's Begin: the window it goes to, and whether the open windows are flushed
 * first (the transaction belongs to a later window).
 */
export function onBegin(s: Pick<PolicyState, 'pending' | 'windowStart'>, commitMs: number, l: Pick<PolicyLimits, 'intervalMs'>): { windowStart: number; flush: boolean } {
  const w = alignWindow(commitMs, l.intervalMs);
  if (s.windowStart === null || w > s.windowStart) return { windowStart: w, flush: s.pending };
  return { windowStart: s.windowStart, flush: false };
}

/**
 * After a Commit: flush now for a reload request (its export should not wait out batch.interval)
 * or because a table the transaction touched passed a size limit; otherwise null.
 */
export function afterCommit(reloadRequests: number, touched: Iterable<{ rows: number; rawBytes: number }>, l: Pick<PolicyLimits, 'maxRows' | 'maxBytes'>): 'reload' | 'size' | null {
  if (reloadRequests > 0) return 'reload';
  for (const f of touched) if (f.rows >= l.maxRows || f.rawBytes >= l.maxBytes) return 'size';
  return null;
}

/** Between messages: the open window's end has passed while idle. */
export function intervalDue(s: PolicyState, now: number, l: Pick<PolicyLimits, 'intervalMs'>): boolean {
  if (s.inTransaction || !s.pending || s.windowStart === null) return false;
  return now >= s.windowStart + l.intervalMs;
}

/**
 * How long the caller may wait for the next frame before `intervalDue` can be true: until the
 * open window ends, but at least `minMs` (a socket drained for a moment mid catch-up is not
 * idleness, and flushing then would cut a burst into many small flushes) and at most `maxMs`.
 */
export function idleWaitMs(s: PolicyState, now: number, l: Pick<PolicyLimits, 'intervalMs'>, minMs: number, maxMs: number): number {
  if (s.inTransaction || !s.pending || s.windowStart === null) return maxMs;
  return Math.min(maxMs, Math.max(minMs, s.windowStart + l.intervalMs - now));
}
