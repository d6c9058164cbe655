/**
 * The service endpoints on `http.port` (0 turns them off), with node's own http:
 * - `GET /health` (liveness): the event loop answers and the main loop has turned in the last 30 s.
 * - `GET /ready` (readiness): streaming (the server accepted START_REPLICATION), the stream is
 *   confirming (a standby status within 30 s), and the registry answers a query within 2 s; not
 *   ready while starting, reconnecting or stopping, nor while a session has waited longer than
 *   60 s for a lock an export holds (./export-locks.ts). The body says why.
 * - `GET /status`: the JSON of `pg-egress status`; with `http.status_token` only for
 *   `Authorization: Bearer <token>` (it names the host, role and tables). The probes and
 *   /metrics stay open: kubelets and scrapers send no token, and they carry no such detail.
 * - `GET /metrics`: Prometheus text (./metrics.ts).
 * Listens on `http.host` (default 127.0.0.1) and `http.port`.
 */
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { statusReport } from '../status/report.js';
import type { DaemonState } from './state.js';
import { exportLockReasons } from './export-locks.js';

const STALE_MS = 30_000;

async function registryAnswers(state: DaemonState): Promise<boolean> {
  if (!state.db) return false;
  const probe = state.db.query('SELECT 1').then(
    () => true,
    () => false,
  );
  return Promise.race([probe, new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether a request carries the bearer token. Both sides are hashed first, so the comparison is
 * constant-time over equal lengths whatever the token's length (timingSafeEqual needs that).
 */
export function bearerAllowed(header: string | undefined, token: string): boolean {
  if (!token) return true;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  return timingSafeEqual(digest(m ? m[1] : ''), digest(token)) && m !== null;
}

export async function startHttp(cfg: Config, log: Logger, state: DaemonState): Promise<http.Server | null> {
  if (cfg.http.port === 0) return null;
  // prom-client is loaded only when the endpoints are on: every CLI start would pay for it.
  const { createMetrics } = await import('./metrics.js');
  const metrics = createMetrics(state, cfg.slot);
  (await import('./metrics-archive.js')).addArchiveMetrics(metrics, state, cfg);
  const send = (res: http.ServerResponse, code: number, body: string, type = 'application/json') => {
    res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, JSON.stringify({ error: 'GET only' }));
    void (async () => {
      try {
        if (url === '/health') {
          const age = Date.now() - state.lastLoopAt;
          const ok = state.phase !== 'streaming' || age < STALE_MS;
          return send(res, ok ? 200 : 503, JSON.stringify({ ok, phase: state.phase, main_loop_age_ms: age }));
        }
        if (url === '/ready') {
          const reasons: string[] = [];
          if (state.phase !== 'streaming') reasons.push(state.reason);
          else if (Date.now() - state.lastStatusAt > STALE_MS) reasons.push('no standby status sent to the server in 30 s');
          if (reasons.length === 0 && !(await registryAnswers(state))) reasons.push('the registry does not answer');
          if (state.db) reasons.push(...(await exportLockReasons(state.db, state.exportLocks()).catch(() => [])));
          // Failover state is detail, not readiness: a lagging standby must not take the pod out.
          const h = state.slotHealth;
          const slot = h ? { failover: h.supported ? h.failover : 'unsupported', synced: h.synced, warnings: h.warnings } : null;
          return send(res, reasons.length ? 503 : 200, JSON.stringify({ ready: reasons.length === 0, phase: state.phase, reasons, slot }));
        }
        if (url === '/status') {
          if (!bearerAllowed(req.headers.authorization, cfg.http.statusToken)) {
            res.setHeader('www-authenticate', 'Bearer realm="pg-egress"');
            return send(res, 401, JSON.stringify({ error: 'unauthorized: /status needs Authorization: Bearer <http.status_token>' }));
          }
          return send(res, 200, JSON.stringify(await statusReport(cfg), null, 2));
        }
        if (url === '/metrics') return send(res, 200, await metrics.metrics(), metrics.contentType);
        return send(res, 404, JSON.stringify({ error: 'not found', endpoints: ['/health', '/ready', '/status', '/metrics'] }));
      } catch (e) {
        return send(res, 500, JSON.stringify({ error: (e as Error).message.split('\n')[0] }));
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new EgressError(
          'CONFIG_INVALID',
          e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN'
            ? `cannot listen on http.host ${cfg.http.host} (${e.code}): not an address of this machine; set http.host (127.0.0.1, 0.0.0.0 or this host's address)`
            : `cannot listen on ${cfg.http.host}:${cfg.http.port} (${e.code}); set http.port to a free port, or 0 to turn the endpoints off`,
          { cause: e },
        ),
      ),
    );
    server.listen(cfg.http.port, cfg.http.host, () => resolve());
  });
  log.info({ host: cfg.http.host, port: cfg.http.port, status_token_set: cfg.http.statusToken !== '' }, 'http endpoints: /health /ready /status /metrics');
  return server;
}
