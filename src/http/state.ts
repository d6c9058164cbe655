/**
 * What the running daemon exposes to /health, /ready, /status and /metrics: a plain object the
 * main loop writes as it goes (a few assignments per loop, nothing per row beyond the
 * controller's own counters) and the HTTP server reads at request time, outside the hot path.
 */
import type { BatchController } from '../batch/controller.js';
import type { StreamedTxns } from '../batch/streamed.js';
import type { Db } from '../db/tx.js';
import { ForgedMessages } from '../ddl/message-auth.js';
import type { ExportLockHolder } from './export-locks.js';
import type { SlotHealth } from '../source/failover.js';

export type Phase = 'starting' | 'streaming' | 'reconnecting' | 'stopping';

export class DaemonState {
  phase: Phase = 'starting';
  /** Why the daemon is not streaming, for /ready. */
  reason = 'starting: preparing the source';
  /** The main loop's last turn (liveness). */
  lastLoopAt = Date.now();
  /** Last standby status sent to the server (confirming). */
  lastStatusAt = 0;
  receivedLsn = 0n;
  confirmedLsn = 0n;
  registeredLsn = 0n;
  reconnects = 0;
  /** Standby status updates sent since start (kept across reconnects). */
  statusSent = 0;
  readonly errors = new Map<string, number>();
  /** Forged `pg-egress:*` messages dropped since start, by prefix (kept across reconnects). */
  readonly forged = new ForgedMessages();
  controller: BatchController | null = null;
  /** Large transactions received in parts and held until their commit (src/batch/streamed.ts). */
  streamed: StreamedTxns | null = null;
  /** The session's registry pool, for scrape-time queries. */
  db: Db | null = null;
  /** The export sessions holding locks on the application's tables now (/ready). */
  exportLocks: () => ExportLockHolder[] = () => [];
  /** Failover state of the slot (src/source/failover.ts), refreshed every 10 s. */
  slotHealth: SlotHealth | null = null;

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }
}
