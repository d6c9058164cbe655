/**
 * Registry migrations are idempotent and safe when two processes start at once (SPEC §7), and the
 * start-up sweep removes files the registry does not know (SPEC §6).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { EVENT_TRIGGERS, ensureEventTriggers, migrate, loadMigrations } from '../../src/registry/migrate.js';
import { sweepOutput } from '../../src/output/sweep.js';
import { insertReloadRequest } from '../../src/registry/reload-requests.js';
import { ReloadRegistry } from '../../src/registry/reloads.js';
import { waitFor } from '../harness/pg.js';
import { createEnv, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';

describe('registry', () => {
  let env: EgressEnv;
  beforeAll(async () => {
    env = await createEnv();
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('applies migrations once when several processes start at the same moment', async () => {
    const clients = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ connectionString: env.url });
        await c.connect();
        return c;
      }),
    );
    try {
      const applied = await Promise.all(clients.map((c) => migrate(c)));
      const all = loadMigrations().map((m) => m.version);
      // Exactly one process applied them all; the others found nothing to do.
      expect(applied.filter((a) => a.length > 0)).toEqual([all]);
      expect(applied.filter((a) => a.length === 0)).toHaveLength(3);
      expect(await migrate(clients[0])).toEqual([]);
      const { rows } = await clients[0].query('SELECT version FROM cdc_registry.migrations ORDER BY 1');
      expect(rows.map((r) => Number(r.version))).toEqual(all);
      const triggers = await clients[0].query(`SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 'pg_egress%' ORDER BY 1`);
      expect(triggers.rows.map((r) => r.evtname)).toEqual(EVENT_TRIGGERS.map((t) => t.name).sort());
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('a reload sent back to pending while a request for its table commits meanwhile is cancelled and hands over, never left running', async () => {
    // The export's end and the stream's new request (a value-changing DDL, a marker) race: the new
    // request commits after the end's statement took its snapshot, so the end does not see it but
    // hits the one-pending-per-table index. Before the fix that error was swallowed and the
    // operation stayed 'running' for ever (an export that never finished, found under load).
    const slot = 'end_race';
    const pool = new pg.Pool({ connectionString: env.url, max: 3 });
    const other = new pg.Client({ connectionString: env.url });
    await other.connect();
    try {
      await migrate(other);
      const reg = new ReloadRegistry(pool, slot);
      const [{ id }] = (
        await pool.query<{ id: string }>(
          `INSERT INTO cdc_registry.reloads (slot_name, schema_name, table_name, state, reason, restore_comment, previous_comment, request_ids)
           VALUES ($1, 'public', 'raced', 'running', 'marker', true, 'the comment', ARRAY['waiter-1']) RETURNING id::text`,
          [slot],
        )
      ).rows;
      // The stream's request, not yet committed when the end runs.
      await other.query('BEGIN');
      await insertReloadRequest(other, slot, {
        schema: 'public', table: 'raced', relid: 1, reason: 'ddl', requestedLsn: null, restoreComment: false, previousComment: null, requestId: null, gapId: null,
      });
      const ended = reg.end(Number(id), 'pending', 'a DDL committed after the snapshot');
      // The end's UPDATE waits on the request's index entry; the request commits.
      await waitFor('the end waits on the pending request', async () =>
        (await pool.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%UPDATE "cdc_registry"."reloads" r%'`)).rowCount === 1,
      );
      await other.query('COMMIT');
      await ended;
      const rows = (await pool.query(`SELECT id::text, state, reason, request_ids, restore_comment, previous_comment FROM cdc_registry.reloads WHERE slot_name = $1 ORDER BY id`, [slot])).rows;
      expect(rows).toEqual([
        { id, state: 'cancelled', reason: 'marker', request_ids: ['waiter-1'], restore_comment: true, previous_comment: 'the comment' },
        { id: expect.any(String), state: 'pending', reason: 'ddl', request_ids: ['waiter-1'], restore_comment: true, previous_comment: 'the comment' },
      ]);
    } finally {
      await other.end();
      await pool.end();
    }
  });

  it('installs missing DDL-capture triggers later, when a superuser runs it', async () => {
    await withDb(env.url, async (c) => {
      for (const t of EVENT_TRIGGERS) await c.query(`DROP EVENT TRIGGER ${t.name}`);
      expect(await ensureEventTriggers(c, false)).toBe(false);
      expect((await c.query(`SELECT 1 FROM pg_event_trigger WHERE evtname LIKE 'pg_egress%'`)).rowCount).toBe(0);
      expect(await ensureEventTriggers(c, true)).toBe(true);
      expect((await c.query(`SELECT 1 FROM pg_event_trigger WHERE evtname LIKE 'pg_egress%'`)).rowCount).toBe(EVENT_TRIGGERS.length);
      expect(await ensureEventTriggers(c, false)).toBe(true);
    });
  });

  it('at start removes only the unregistered files of a flush that recorded its intent, and _tmp', async () => {
    await withDb(env.url, (c) => c.query('CREATE TABLE kept (id int PRIMARY KEY)'));
    const daemon = startInProcess(env);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query('INSERT INTO kept VALUES (1)'));
    await waitCaughtUp(env);
    await daemon.stop();
    const [win] = readdirSync(path.join(env.outDir, 'public.kept')).filter((w) => existsSync(path.join(env.outDir, 'public.kept', w, 'streaming.csv.gz')));
    const registeredStreaming = `public.kept/${win}/streaming.csv.gz`;
    // A flush that died after recording its intent: its files, a .tmp sibling, a batch index.
    const unfinished = ['public.kept/20000101T000000Z/streaming.csv.gz', '_batches/20000101T000000Z.json'];
    // Files nobody recorded: another process's, or an archive the registry lost. Never deleted.
    // (An unknown batch index in _batches/ is adopted or refused: test/integration/out-of-band.test.ts.)
    const foreign = [`public.kept/${win}/notes.txt`, 'public.other/20000101T000000Z/streaming.csv.gz', '_batches/notes.txt', 'not-ours/file.txt'];
    for (const s of [...unfinished, 'public.kept/20000101T000000Z/schema.yml.tmp', '_tmp/abc.csv.gz', ...foreign]) {
      mkdirSync(path.dirname(path.join(env.outDir, s)), { recursive: true });
      writeFileSync(path.join(env.outDir, s), 'x');
    }
    await withDb(env.url, (c) =>
      c.query(`INSERT INTO cdc_registry.write_intents (slot_name, batch_id, paths) VALUES ($1, '20000101T000000Z', $2)`, [
        env.slot,
        [...unfinished, 'public.kept/20000101T000000Z/schema.yml', registeredStreaming],
      ]),
    );
    const registered = await withDb(env.url, async (c) => new Set((await c.query('SELECT path FROM cdc_registry.files')).rows.map((r) => r.path as string)));
    expect(registered.has(registeredStreaming)).toBe(true);
    // output.dir's own copies of intents (src/commit/local-intents.ts): one of a batch that is
    // registered (the process died after the registration, before it removed the copy): its files
    // stay; one of a flush that never registered: its file goes.
    const [registeredBatch] = await withDb(env.url, async (c) =>
      (await c.query<{ b: string }>('SELECT batch_id AS b FROM cdc_registry.files WHERE path = $1', [registeredStreaming])).rows.map((r) => r.b),
    );
    const localOnly = 'public.kept/20000102T000000Z/streaming.csv.gz';
    mkdirSync(path.join(env.outDir, '_intents'), { recursive: true });
    mkdirSync(path.dirname(path.join(env.outDir, localOnly)), { recursive: true });
    writeFileSync(path.join(env.outDir, localOnly), 'x');
    const intent = (batch: string, paths: string[]) => writeFileSync(path.join(env.outDir, '_intents', `${batch}.json`), JSON.stringify({ batch_id: batch, paths, reloads: [] }));
    intent(registeredBatch, [...registered].filter((p) => p.includes(`/${registeredBatch}/`) || p.endsWith(`/${registeredBatch}.json`)));
    intent('20000102T000000Z', [localOnly]);

    // The daemon's start-up runs the sweep: start it again and stop it.
    const again = startInProcess(env);
    await waitSlotActive(env);
    await again.stop();
    expect(existsSync(path.join(env.outDir, 'public.kept/20000101T000000Z'))).toBe(false);
    expect(existsSync(path.join(env.outDir, '_batches/20000101T000000Z.json'))).toBe(false);
    expect(existsSync(path.join(env.outDir, '_tmp/abc.csv.gz'))).toBe(false);
    expect(existsSync(path.join(env.outDir, localOnly))).toBe(false);
    expect(readdirSync(path.join(env.outDir, '_intents'))).toEqual([]);
    for (const f of foreign) expect(existsSync(path.join(env.outDir, f)), f).toBe(true);
    for (const p of registered) expect(existsSync(path.join(env.outDir, p)), p).toBe(true);
    expect(registered.size).toBeGreaterThanOrEqual(4);
    expect(await withDb(env.url, async (c) => (await c.query('SELECT 1 FROM cdc_registry.write_intents')).rowCount)).toBe(0);
    // The direct call: nothing recorded, nothing removed.
    expect((await sweepOutput(env.outDir, [])).removed).toEqual([]);
  });
});
