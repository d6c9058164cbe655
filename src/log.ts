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

export function createLogger(level: string): Logger {
  const pretty = prettyAvailable();
  const pino = loadPino(pretty);
  return pino(
    {
      level,
      base: { svc: 'pg-egress' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'private_key', '*.private_key', 'privateKey', '*.privateKey', 'statusToken', '*.statusToken', 'status_token', '*.status_token'], censor: '***' },
    },
    pretty ? pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc' } }) : undefined,
  );
}
