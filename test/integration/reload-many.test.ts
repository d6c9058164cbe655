/**
 * The initial export of many small tables (issue 18, R4): tables that finish while another group
 * is being registered are registered together, one batch index listing each table's manifest.
 * Every table still has exactly one reload set in a folder of its own, `verify` passes on the
 * whole output (batch roots over several tables' files, the chain), and every table rebuilds to
 * the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { waitFor } from '../harness/pg.js';
import { createEnv, rebuildFromOutput, reloadSets, runCli, sortedEntries, sourceRows, spawnCli, withDb, type Child, type EgressEnv } from '../helpers/egress.js';

const TABLES = 60;
const names = Array.from({ length: TABLES }, (_, i) => `t_${String(i).padStart(3, '0')}`);

describe('initial export of many small tables', () => {
  let env: EgressEnv;
  let daemon: Child;

  beforeAll(async () => {
    env = await createEnv({ prefix: 'many' });
    await withDb(env.url, async (c) => {
      for (const [i, t] of names.entries()) {
        await c.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text); INSERT INTO ${t} SELECT g, CASE WHEN g % 7 = 0 THEN 'a "q", b' || chr(10) || 'c' ELSE md5(g::text) END FROM generate_series(1, ${20 + i}) g`);
      }
    });
    expect((await runCli(['init', '--config', env.configPath])).code).toBe(0);
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitFor(
      'every table exported',
      () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query<{ done: string; failed: string | null }>(`SELECT count(*) FILTER (WHERE state = 'done')::text AS done, string_agg(error, '; ') FILTER (WHERE state = 'failed') AS failed FROM cdc_registry.reloads`);
          if (rows[0].failed) throw new Error(rows[0].failed);
          return Number(rows[0].done) === TABLES;
        }),
      { timeoutMs: 180_000, intervalMs: 200 },
    );
  });

  afterAll(async () => {
    daemon?.proc.kill('SIGTERM');
    await daemon?.exit;
    await env?.drop();
  });

  it('registers tables together in batches whose index lists each manifest; one reload set per table', async () => {
    const indexes = readdirSync(path.join(env.outDir, '_batches')).map((f) => JSON.parse(readFileSync(path.join(env.outDir, '_batches', f), 'utf8')) as { kind: string; manifests: { table: string; path: string }[] });
    const reloadIdx = indexes.filter((b) => b.kind === 'reload');
    const listed = reloadIdx.flatMap((b) => b.manifests.map((m) => m.table)).sort();
    expect(listed).toEqual([...names].sort());
    // Groups form while the first table's registration runs (fsyncs, a registry transaction).
    expect(reloadIdx.length).toBeLessThan(TABLES);
    expect(Math.max(...reloadIdx.map((b) => b.manifests.length))).toBeGreaterThan(1);
    const { rows } = await withDb(env.url, (c) => c.query<{ batches: string; tables: string }>(`SELECT count(DISTINCT batch_id)::text AS batches, count(*)::text AS tables FROM cdc_registry.reloads WHERE state = 'done'`));
    expect(rows[0]).toEqual({ batches: String(reloadIdx.length), tables: String(TABLES) });
    for (const t of names) expect(reloadSets(env.outDir, `public.${t}`).length, t).toBe(1);
  });

  it('verify passes and every table rebuilds to the source', async () => {
    const v = await runCli(['verify', env.outDir]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    for (const t of names) {
      const got = rebuildFromOutput(env.outDir, `public.${t}`, ['id'], ['id', 'v']);
      expect(sortedEntries(got.table), t).toEqual(sortedEntries(await sourceRows(env.url, `public.${t}`, ['id'], ['id', 'v'])));
    }
  });
});
