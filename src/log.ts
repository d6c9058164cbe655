/**
 * Structured logs (JSON lines on stdout, for Kubernetes). Secrets never reach a log line: the
 * config is logged only through `redactedConfig`, and errors carry no connection strings.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { svc: 'pg-egress' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['password', '*.password', 'private_key', '*.private_key', 'privateKey', '*.privateKey'], censor: '***' },
  });
}
