/**
 * What an export's failure means, for the reloader's retry: a lock wait that timed out and a DDL
 * that raced the export are tried again (never a permanent `failed`), and when several workers
 * fail, every one's error is reported, not only the first.
 */
import type { Config } from '../config/index.js';
import { EgressError, isEgressError } from '../errors.js';
import { sourceError } from '../db/connect.js';

/** What an export failure means: a lock wait that timed out and a DDL race are tried again. */
export function exportError(e: unknown, cfg: Config): EgressError {
  if (isEgressError(e)) return e;
  const code = (e as { code?: string }).code;
  if (code === '55P03') return new EgressError('RELOAD_BLOCKED', 'a table of the export is locked by another session (waited 30 s for an ACCESS SHARE lock); trying again', { cause: e });
  // A table or column that vanished under the export (dropped, renamed) is a race, not a failure:
  // the next attempt reads the catalog again (or cancels the reload of a table that is gone).
  if (code === '42P01' || code === '42703' || code === '40001') {
    return new EgressError('RELOAD_RACE', `a DDL raced the export (${(e as Error).message.split('\n')[0]}); exporting again from a new snapshot`, { cause: e });
  }
  return sourceError(e, cfg.source, 'export');
}

/** Every worker's error, not only the first: one line each, distinct, in the order they came. */
export function workerErrors(errors: unknown[], cfg: Config): EgressError {
  const all = errors.map((e) => exportError(e, cfg));
  if (all.length === 1) return all[0];
  const messages = [...new Set(all.map((e) => e.message))];
  // The worst error's code decides the retry (errors.ts): it is retryable exactly when every
  // worker's error is, since OUTPUT_IO never is and otherwise the first non-retryable one wins.
  const worst = all.find((e) => e.code === 'OUTPUT_IO') ?? all.find((e) => !e.retryable) ?? all[0];
  const text = messages.length === 1 ? `${all.length} export workers failed: ${messages[0]}` : `${all.length} export workers failed: ${messages.map((m, i) => `(${i + 1}) ${m}`).join('; ')}`;
  return new EgressError(worst.code, text, { cause: errors[0] });
}
