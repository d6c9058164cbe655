/**
 * An export's progress in cdc_registry.reloads while it runs, every PROGRESS_MS: one statement per
 * round for the tables whose progress moved (an initial export of 500 tables sent 500 UPDATEs
 * every round, which queued behind the registrations on the same rows and pool); tables whose
 * chunks are all done are being registered and are left alone.
 */
import type { ReloadRegistry } from '../registry/reloads.js';

const PROGRESS_MS = 250;

/** What the reporter reads of a table's export (the reloader's state of it). */
export interface TableProgress {
  info: { op: { id: number } };
  chunks: number;
  done: number;
  rows: number;
  rawBytes: number;
}

/** Starts reporting `states` (read each round); returns the function that stops it. */
export function reportProgress(reloads: Pick<ReloadRegistry, 'progressMany'>, states: Map<number, TableProgress>): () => void {
  const reported = new Map<number, number>();
  let reporting = false;
  const timer = setInterval(() => {
    if (reporting) return;
    const moved = [...states.values()].filter((s) => s.done < s.chunks && reported.get(s.info.op.id) !== s.rawBytes);
    if (!moved.length) return;
    for (const s of moved) reported.set(s.info.op.id, s.rawBytes);
    reporting = true;
    void reloads
      .progressMany(moved.map((s) => ({ id: s.info.op.id, rows: s.rows, rawBytes: s.rawBytes, chunksDone: s.done })))
      .catch(() => undefined)
      .finally(() => (reporting = false));
  }, PROGRESS_MS);
  return () => clearInterval(timer);
}
