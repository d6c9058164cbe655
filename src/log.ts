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

export function createLogger(level: string): Logger {
  // Loaded when a logger is made: `reload --wait` and `status` start without it (~15 ms).
  const pino = createRequire(import.meta.url)('pino') as typeof import('pino');
  return pino(
    {
      level,
      base: { svc: 'pg-egress' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'private_key', '*.private_key', 'privateKey', '*.privateKey', 'statusToken', '*.statusToken', 'status_token', '*.status_token'], censor: '***' },
    },
    prettyAvailable() ? pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc' } }) : undefined,
  );
}
