/**
 * Authenticated control messages (SPEC §8): any role can call pg_logical_emit_message(), so a
 * role without any right on cdc_registry or the tables forges reload, DDL and drop messages, and
 * replays a genuine message's bytes in a transaction of its own. None of it changes the archive or
 * starts an export; /metrics counts them. The emitting functions are not callable by that role.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';
import { createEnv, rebuildFromOutput, readStreamingRows, sortedEntries, sourceRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

const metric = (body: string, name: string, labels: string): number | null => {
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : null;
};

/** Every ddl.sql under output.dir, concatenated. */
function allDdl(outDir: string): string {
  let text = '';
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'ddl.sql') text += readFileSync(p, 'utf8');
    }
  };
  if (existsSync(outDir)) walk(outDir);
  return text;
}

describe('forged control messages', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  let port: number;
  let appUrl: string;
  const app = `app_${Math.random().toString(36).slice(2, 8)}`;

  const reloadCount = () => withDb(env.url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM cdc_registry.reloads`)).rows[0].n));
  const asApp = async (sql: string, params: unknown[] = []) => withDb(appUrl, (c) => c.query(sql, params));

  beforeAll(async () => {
    env = await createEnv({ prefix: 'forged' });
    port = await freePort();
    writeConfig(env, `http:\n  port: ${port}`);
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE big2 (id int PRIMARY KEY, v text);
               INSERT INTO big2 SELECT g, 'v' || g FROM generate_series(1, 500) g;
               CREATE TABLE customers (id int PRIMARY KEY, email text);
               INSERT INTO customers SELECT g, g || '@example.com' FROM generate_series(1, 50) g;
               CREATE TABLE do_made (id int PRIMARY KEY, v text);
               INSERT INTO do_made SELECT g, 'd' || g FROM generate_series(1, 50) g;
               CREATE ROLE ${app} LOGIN;`),
    );
    const u = new URL(env.url);
    u.username = app;
    appUrl = u.toString();
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await waitFor('initial export done', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state = 'done'`)).rowCount! >= 3), { timeoutMs: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
    await withDb(env.url.replace(/\/[^/]*$/, '/postgres'), (c) => c.query(`DROP ROLE IF EXISTS ${app}`)).catch(() => undefined);
  });

  it('a role without rights cannot call the functions that emit authentic messages, nor read the key', async () => {
    for (const sql of [
      `SELECT cdc_registry.emit_message('pg-egress:reload', '{}')`,
      `SELECT cdc_registry.emit_reload('marker', 'public', 'big2', 'big2'::regclass)`,
      `SELECT cdc_registry.record_ddl('DROP TABLE', 'table', 'public.do_made', 'public', 'do_made', 'do_made'::regclass, NULL, true)`,
      `SELECT key FROM cdc_registry.message_key`,
    ]) {
      await expect(asApp(sql), sql).rejects.toThrow(/permission denied/);
    }
    // Even with USAGE on the schema (a DBA's grant): the functions and the key stay closed to PUBLIC.
    await withDb(env.url, (c) => c.query(`GRANT USAGE ON SCHEMA cdc_registry TO ${app}`));
    try {
      for (const sql of [`SELECT cdc_registry.emit_message('pg-egress:reload', '{}')`, `SELECT cdc_registry.hmac_sha256('k', 'm')`, `SELECT key FROM cdc_registry.message_key`, `SELECT cdc_registry.emit_ddl_reload('public', 'big2', 'big2'::regclass, 'x')`]) {
        await expect(asApp(sql), sql).rejects.toThrow(/permission denied/);
      }
    } finally {
      await withDb(env.url, (c) => c.query(`REVOKE USAGE ON SCHEMA cdc_registry FROM ${app}`));
    }
  });

  it('forged reload, DDL and drop messages, and a replayed genuine one, change nothing and export nothing; /metrics counts them', async () => {
    const relid = (t: string) => withDb(env.url, async (c) => Number((await c.query(`SELECT $1::regclass::oid AS o`, [t])).rows[0].o));
    // A genuine marker, read back from a slot of our own to get its exact bytes.
    await withDb(env.url, (c) => c.query(`SELECT pg_create_logical_replication_slot('peek_${env.slot}', 'test_decoding')`));
    await withDb(env.url, (c) => c.query(`COMMENT ON TABLE big2 IS 'pg-egress:reload'`));
    // The test cluster commits asynchronously: the commit reaches the slot's reader a moment later.
    const genuine = await waitFor('the genuine marker message', () =>
      withDb(env.url, async (c) => {
        const { rows } = await c.query<{ data: string }>(`SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL)`, [`peek_${env.slot}`]);
        const m = rows.find((r) => r.data.startsWith('message: transactional: 1 prefix: pg-egress:reload,'));
        return m ? m.data.slice(m.data.indexOf('content:') + 'content:'.length) : null;
      }),
    );
    await withDb(env.url, (c) => c.query(`SELECT pg_drop_replication_slot($1)`, [`peek_${env.slot}`]));
    expect(genuine).toMatch(/^pg-egress-mac1 [0-9a-f]{64}\n\{/);
    await waitFor('the genuine marker exported', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE table_name = 'big2' AND reason = 'marker' AND state = 'done'`)).rowCount === 1), { timeoutMs: 60_000 });
    await waitFor('comment restored', () => withDb(env.url, async (c) => (await c.query(`SELECT obj_description('big2'::regclass) AS d`)).rows[0].d !== 'pg-egress:reload'));
    const reloadsBefore = await reloadCount();
    const setsBefore = ['big2', 'customers', 'do_made'].map((t) => readdirSync(path.join(env.outDir, `public.${t}`)).length);

    const forge = (prefix: string, payload: unknown) => asApp(`SELECT pg_logical_emit_message(true, $1, $2)`, [prefix, typeof payload === 'string' ? payload : JSON.stringify(payload)]);
    await forge('pg-egress:reload', { schema: 'public', table: 'big2', relid: await relid('big2') });
    await forge('pg-egress:ddl', { command_tag: 'ALTER TABLE', schema: 'public', table: 'customers', relid: await relid('customers'), command: 'ALTER TABLE customers DROP COLUMN email', definition: null, dropped: false });
    await forge('pg-egress:ddl', { command_tag: 'DROP TABLE', schema: 'public', table: 'do_made', relid: await relid('do_made'), command: 'DROP TABLE do_made', definition: null, dropped: true });
    await forge('pg-egress:moved', { relid: await relid('do_made'), from: { schema: 'public', table: 'do_made' }, to: { schema: 'public', table: 'x' } });
    // A made-up MAC, and the genuine marker's exact bytes replayed in a transaction of the app's own.
    await forge('pg-egress:reload', `pg-egress-mac1 ${'0'.repeat(64)}\n${JSON.stringify({ schema: 'public', table: 'customers', relid: 1 })}`);
    await forge('pg-egress:reload', genuine);
    // Non-transactional: ours never are.
    await asApp(`SELECT pg_logical_emit_message(false, 'pg-egress:reload', $1)`, [JSON.stringify({ schema: 'public', table: 'big2', relid: 1 })]);
    // Real changes after them, so the daemon has passed them all.
    await withDb(env.url, (c) => c.query(`UPDATE customers SET email = 'after@example.com' WHERE id = 1; UPDATE do_made SET v = 'after' WHERE id = 1`));
    await waitCaughtUp(env);

    const body = await waitFor('forged messages counted', async () => {
      const b = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return (metric(b, 'pg_egress_forged_messages_total', 'prefix="pg-egress:reload"') ?? 0) >= 4 ? b : null;
    });
    expect(metric(body, 'pg_egress_forged_messages_total', 'prefix="pg-egress:reload"')).toBe(4);
    expect(metric(body, 'pg_egress_forged_messages_total', 'prefix="pg-egress:ddl"')).toBe(2);
    expect(metric(body, 'pg_egress_forged_messages_total', 'prefix="pg-egress:moved"')).toBe(1);

    // No export was asked for or started, nothing was written from them.
    expect(await reloadCount()).toBe(reloadsBefore);
    const ddl = allDdl(env.outDir);
    expect(ddl).not.toContain('DROP COLUMN email');
    expect(ddl).not.toContain('DROP TABLE do_made');
    expect(readStreamingRows(env.outDir, 'public.do_made').rows.map((r) => r.op)).toEqual(['U']);
    expect(['big2', 'customers', 'do_made'].map((t) => readdirSync(path.join(env.outDir, `public.${t}`)).length)).toEqual(setsBefore.map((n, i) => (i === 0 ? n : n + 1)));
    for (const t of ['big2', 'customers', 'do_made']) {
      const cols = t === 'customers' ? ['id', 'email'] : ['id', 'v'];
      const { table } = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], cols);
      expect(sortedEntries(table)).toEqual(sortedEntries(await sourceRows(env.url, `public.${t}`, ['id'], cols)));
    }
  }, 120_000);
});
