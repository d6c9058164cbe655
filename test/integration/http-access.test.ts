/**
 * Who can reach the endpoints (issue 14 item 7): the server binds `http.host` only (127.0.0.1 by
 * default; 127.0.0.2 is another loopback address on Linux, so a server bound there is not reached
 * on 127.0.0.1), an address that is not this machine's is a one-line config error, and with
 * `http.status_token` `/status` answers only a matching bearer token while /health, /ready and
 * /metrics stay open. The server runs in-process on a real database (statusReport reads it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startHttp } from '../../src/http/server.js';
import { DaemonState } from '../../src/http/state.js';
import { createLogger } from '../../src/log.js';
import { EgressError } from '../../src/errors.js';
import { redactedConfig } from '../../src/config/index.js';
import { createEnv, loadEnvConfig, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { freePort } from '../harness/cluster.js';

const TOKEN = 'tok-3f9a1c27b4e8d605a1b2';
const get = async (url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; auth: string | null }> => {
  try {
    const r = await fetch(url, { headers });
    return { status: r.status, body: await r.text(), auth: r.headers.get('www-authenticate') };
  } catch {
    return { status: 0, body: '', auth: null };
  }
};

describe('http access', () => {
  let env: EgressEnv;
  const servers: http.Server[] = [];
  const log = createLogger('fatal');
  const start = async (httpYaml: string) => {
    writeConfig(env, httpYaml);
    const server = await startHttp(loadEnvConfig(env), log, new DaemonState());
    servers.push(server!);
    return server!;
  };
  beforeAll(async () => {
    env = await createEnv();
  });
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    await env?.drop();
  });

  it('binds 127.0.0.1 by default and only the address http.host names', async () => {
    const port = await freePort();
    const def = await start(`http:\n  port: ${port}`);
    expect((def.address() as AddressInfo).address).toBe('127.0.0.1');
    expect((await get(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    expect((await get(`http://127.0.0.2:${port}/health`)).status).toBe(0);

    const port2 = await freePort();
    const other = await start(`http:\n  port: ${port2}\n  host: 127.0.0.2`);
    expect((other.address() as AddressInfo).address).toBe('127.0.0.2');
    expect((await get(`http://127.0.0.2:${port2}/health`)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${port2}/health`)).status).toBe(0);

    // An address that is not this machine's (TEST-NET-3): one line naming http.host.
    writeConfig(env, `http:\n  port: ${await freePort()}\n  host: 203.0.113.7`);
    const err = await startHttp(loadEnvConfig(env), log, new DaemonState()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect((err as EgressError).message).toMatch(/^cannot listen on http\.host 203\.0\.113\.7 \(EADDRNOTAVAIL\).*set http\.host/);
  });

  it('answers /status only with the bearer token; the probes and /metrics stay open', async () => {
    const port = await freePort();
    await start(`http:\n  port: ${port}\n  status_token: ${TOKEN}`);
    const url = (p: string) => `http://127.0.0.1:${port}${p}`;
    const attempts: Record<string, string>[] = [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Bearer ${TOKEN.slice(0, -1)}` }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }, { authorization: 'Bearer ' }];
    for (const headers of attempts) {
      const r = await get(url('/status'), headers);
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.auth).toMatch(/^Bearer/);
      expect(r.body).not.toContain(env.dbName);
    }
    const ok = await get(url('/status'), { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).slot.name).toBe(env.slot);
    expect((await get(url('/health'))).status).toBe(200);
    expect((await get(url('/ready'))).status).toBe(503); // not streaming: no daemon here, but answered without a token
    const metrics = await get(url('/metrics'));
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('pg_egress_up 0');
    for (const p of ['/health', '/ready', '/metrics']) expect((await get(url(p))).body).not.toContain(TOKEN);

    // Without a token /status is open, as before.
    const port2 = await freePort();
    await start(`http:\n  port: ${port2}`);
    expect((await get(`http://127.0.0.1:${port2}/status`)).status).toBe(200);
  });

  it('refuses a short status token, naming the key; the token is never in the logged config', async () => {
    writeConfig(env, `http:\n  port: 0\n  status_token: ${TOKEN}`);
    const cfg = loadEnvConfig(env);
    expect(cfg.http.statusToken).toBe(TOKEN);
    expect(JSON.stringify(redactedConfig(cfg))).not.toContain(TOKEN);
    writeConfig(env, `http:\n  port: 0\n  status_token: short`);
    expect(() => loadEnvConfig(env)).toThrow(/http\.status_token must be at least 16 characters/);
  });
});
