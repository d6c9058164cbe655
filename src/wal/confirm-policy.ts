/**
 * What the stream confirms to the server, and when (SPEC §6): pure functions of the loop's state.
 *
 * The slot is confirmed to what is registered; when nothing received is pending, to the server's
 * reported WAL end, so an idle or unpublished-only workload does not hold WAL. The idle part only
 * as far as output.dir/_confirmed.json allows (written ahead, at most every 100 ms), so that the
 * next start can tell our confirmations from someone else's (src/source/slot-check.ts).
 *
 * A keepalive is answered only when the server asks or when the answer confirms more than the
 * last one. While our position is behind the WAL it sent, the walsender pings after every reply it
 * reads (WalSndWaitForWal in src/backend/replication/walsender.c), so a reply that cannot move
 * (its idle part waiting for _confirmed.json) was answered by another ping at once: ~3,000 a
 * second on both sides for as long as unpublished WAL kept coming (the registry's own writes all
 * through an export). The loop instead wakes when _confirmed.json may be written (frameWaitMs).
 */
import { maxLsn, minLsn, type Lsn } from '../lsn.js';

export interface ConfirmState {
  /** Registered (durable) position. */
  durable: Lsn;
  /** Nothing received is pending and no transaction is open. */
  idle: boolean;
  /** The server's WAL end as last reported while idle. */
  idleWalEnd: Lsn;
  /** How far _confirmed.json allows the idle part to go. */
  recordLimit: Lsn;
  /** What was confirmed last. */
  confirmed: Lsn;
}

/** The position a standby status confirms now; never less than what was confirmed before. */
export function confirmTarget(s: ConfirmState): Lsn {
  let l = s.durable;
  if (s.idle) l = maxLsn(l, minLsn(s.idleWalEnd, s.recordLimit));
  return maxLsn(s.confirmed, l);
}

/** Whether a keepalive is answered (see above). */
export function answerKeepalive(replyRequested: boolean, s: ConfirmState): boolean {
  return replyRequested || confirmTarget(s) > s.confirmed;
}

/**
 * How long the loop may wait for the next frame: `idleWaitMs` (the flush policy's), or less when
 * idle WAL waits for _confirmed.json, which may be written in `recordDueInMs`.
 */
export function frameWaitMs(idleWaitMs: number, s: ConfirmState, recordDueInMs: number): number {
  return s.idle && s.idleWalEnd > s.recordLimit ? Math.min(idleWaitMs, recordDueInMs + 1) : idleWaitMs;
}
