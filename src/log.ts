/**
 * Structured logs: JSON lines on stdout (for Kubernetes), or pretty lines when stdout is a
 * terminal and the optional `pino-pretty` is installed. Secrets never reach a log line: the config
 * is logged only through `redactedConfig`, and errors carry no connection strings.
 */
import { createRequire } from 'node:module';
import type { Logger } from 'pino';

export type { Logger };

function prettyAvailable(): boolean {
  if (!process.stdout.isTTY || process.env.PG_EGRESS_LOG_FORMAT === 'json') return false;
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/**
 * pino, loaded when a logger is made (`reload --wait` and `status` start without it): for JSON
 * lines from the copy of it in one file that the build puts beside the bundle's chunks
 * (scripts/bundle.mjs; ~15-25 ms less of every daemon start), for the pretty output of a
 * terminal (a transport: a worker thread started by file name) and where there is no such copy
 * (dist/ unbundled, the tests' src/) from node_modules.
 */
function loadPino(pretty: boolean): typeof import('pino') {
  const req = createRequire(import.meta.url);
  if (!pretty) {
    try {
      return req('./pino.cjs') as typeof import('pino');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  return req('pino') as typeof import('pino');
}

/** Keys whose values no log line shows, at the top of a line's fields or one level down. */
const SECRET_KEYS = new Set(['password', 'private_key', 'privateKey', 'statusToken', 'status_token']);
const CENSOR = '***';

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
// The few secret keys looked up, not every key of the value walked: a Buffer or a large object
// logged as a field would otherwise cost a step per element on every line.
const hasSecret = (o: Record<string, unknown>): boolean => {
  for (const k of SECRET_KEYS) if (k in o) return true;
  return false;
};
const censored = (o: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const k in o) out[k] = SECRET_KEYS.has(k) ? CENSOR : o[k];
  return out;
};

/**
 * A log line's fields with every secret key's value replaced, at the top level and one level down
 * (what pino's `redact` paths `key` and `*.key` did); the fields themselves when there is none (the
 * caller's object is never changed). 500 lines like an export's `reloaded` (one per table) took
 * 17-29 ms with pino's redact here, 5.3-5.6 ms with this check. pino gives a child logger's
 * bindings no formatter: pg-egress makes no child logger.
 */
export function censorSecrets(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const k in fields) {
    const v = fields[k];
    if (SECRET_KEYS.has(k)) (out ??= { ...fields })[k] = CENSOR;
    else if (isPlain(v) && hasSecret(v)) (out ??= { ...fields })[k] = censored(v);
  }
  return out ?? fields;
}

/** The logger's options (createLogger; a test writes the same lines to a stream of its own). */
export function loggerOptions(level: string, pino: typeof import('pino')): import('pino').LoggerOptions {
  return {
    level,
    base: { svc: 'pg-egress' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { log: censorSecrets },
  };
}

export function createLogger(level: string): Logger {
  const pretty = prettyAvailable();
  const pino = loadPino(pretty);
  return pino(
    loggerOptions(level, pino),
    pretty ? pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc' } }) : undefined,
  );
}
