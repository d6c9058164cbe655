/**
 * Every name PostgreSQL accepts works end to end (issue 14 item 6): tables named with a newline,
 * a tab, `%`, `/`, `..`, quotes and a 63-byte unicode name (also in a schema named with a
 * newline, a dot and a slash, and one that would collide with `_owner.json`) are selected by
 * `tables.include`, exported at the first start, streamed, reloaded by `pg-egress reload` with the
 * names `status` prints, and rebuild equal to the source; `status` prints no raw control
 * character. The SQL side of the selection (`cdc_registry.matches`, run by the event trigger and
 * `selected_tables`) agrees with the Node side on the hostile name set of the unit test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { matchTable, parseConfig } from '../../src/config/index.js';
import { displayTable } from '../../src/config/patterns.js';
import { tableFolder } from '../../src/output/layout.js';
import { HOSTILE_SCHEMAS, HOSTILE_TABLES, PATTERN_SETS } from '../helpers/hostile-names.js';
import { createEnv, rebuildFromOutput, reloadSets, runCli, sortedEntries, sourceRows, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const qi = (s: string) => '"' + s.replace(/"/g, '""') + '"';
const WEIRD_SCHEMA = 'we\nird.sch/ema';
const TABLES: [string, string][] = [
  ['public', 'line\nbreak'],
  ['public', 'tab\there'],
  ['public', 'per%cent'],
  ['public', 'sl/ash'],
  ['public', '..'],
  ['public', 'quo"te'],
  ['public', "apo'strophe"],
  ['public', 'ü' + 'テ'.repeat(20) + 'x'],
  [WEIRD_SCHEMA, 'dot.ted'],
  ['_owner', 'json'],
];
const q = ([s, t]: [string, string]) => `${qi(s)}.${qi(t)}`;

describe('hostile names end to end', () => {
  let env: EgressEnv;
  let daemon: Child | null = null;
  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, `tables:\n  include: ["public.*", ${JSON.stringify(`"${WEIRD_SCHEMA}".*`)}, "_owner.*"]`);
    await withDb(env.url, async (c) => {
      await c.query(`CREATE SCHEMA ${qi(WEIRD_SCHEMA)}; CREATE SCHEMA _owner`);
      for (const t of TABLES) await c.query(`CREATE TABLE ${q(t)} (id int PRIMARY KEY, v text); INSERT INTO ${q(t)} SELECT g, 'initial ' || g FROM generate_series(1, 50) g`);
    });
  });
  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it('stream, reload by the printed name, and rebuild equal to the source; status prints them escaped', async () => {
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    const write = async (tag: string, base: number) =>
      withDb(env.url, async (c) => {
        for (const t of TABLES) {
          await c.query(`BEGIN; INSERT INTO ${q(t)} SELECT g, '${tag} ' || g FROM generate_series(${base + 1}, ${base + 20}) g; UPDATE ${q(t)} SET v = v || E' ${tag}\\n,"' WHERE id % 3 = 0; DELETE FROM ${q(t)} WHERE id % 7 = 0; COMMIT`);
          await c.query(`UPDATE ${q(t)} SET id = id + 10000 WHERE id = ${base + 1}`);
        }
      });
    await write('a', 1000);
    await waitCaughtUp(env);
    // Reload two of them by the names status prints (U&"..." for the control characters).
    const reloadNames = [displayTable(...TABLES[0]), displayTable(...TABLES[8])];
    expect(reloadNames).toEqual(['public.U&"line\\000Abreak"', 'U&"we\\000Aird.sch/ema"."dot.ted"']);
    const r = await runCli(['reload', ...reloadNames, '--config', env.configPath, '--wait']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/\n(break|ird\.sch)/); // no raw newline inside a name
    expect(r.stdout).toContain(`${reloadNames[0]}: done`);
    await write('b', 2000);
    await waitCaughtUp(env);

    const st = await runCli(['status', '--config', env.configPath]);
    expect(st.code).toBe(0);
    for (const t of TABLES) expect(st.stdout).toContain(displayTable(...t));
    // Every line of the table list starts with a name and has a mode: no name was split by a newline.
    const lines = st.stdout.split('\n');
    for (const line of lines.slice(lines.findIndex((l) => l.startsWith('table')) + 1, lines.indexOf('', lines.findIndex((l) => l.startsWith('table'))))) {
      expect(line).toMatch(/ (streaming|pending_reload|reloading) /);
    }
    expect(st.stdout).not.toMatch(/[\t\r]/);
    const json = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout);
    expect(json.tables.map((t: { table: string }) => t.table).sort()).toEqual(TABLES.map((t) => displayTable(...t)).sort());

    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
    for (const t of TABLES) {
      const folder = tableFolder(...t);
      expect(existsSync(path.join(env.outDir, folder)), folder).toBe(true);
      const got = rebuildFromOutput(env.outDir, folder, ['id'], ['id', 'v']);
      expect(got.reload, `${JSON.stringify(t)} has a reload set`).not.toBeNull();
      expect(got.applied, `${JSON.stringify(t)} has streaming rows`).toBeGreaterThan(0);
      expect(sortedEntries(got.table), JSON.stringify(t)).toEqual(sortedEntries(await sourceRows(env.url, q(t), ['id'], ['id', 'v'])));
    }
    // The reloaded ones have two reload sets (initial and requested); the rebuild used the newest.
    for (const t of [TABLES[0], TABLES[8]]) expect(reloadSets(env.outDir, tableFolder(...t)).length, JSON.stringify(t)).toBe(2);
    expect((await runCli(['verify', env.outDir])).code).toBe(0);
  });

  it('selects on the SQL side exactly what the Node side selects', async () => {
    const pairs = HOSTILE_SCHEMAS.flatMap((s) => HOSTILE_TABLES.map((t) => [s, t] as const));
    let compared = 0;
    for (const set of PATTERN_SETS) {
      const cfg = parseConfig(`source:\n  url: postgres://x@h/d\ntables: ${JSON.stringify(set)}\n`, { env: {}, baseDir: '/tmp' });
      // What the daemon stores in cdc_registry.settings (src/source/prepare.ts).
      const sql = (ps: typeof cfg.tables.include) => JSON.stringify(ps.map((p) => ({ schema: p.schema.source, table: p.table.source })));
      const got = await withDb(env.url, async (c) => {
        const { rows } = await c.query<{ m: boolean }>(
          `SELECT cdc_registry.matches($1::jsonb, $2::jsonb, s, t) AS m FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS x(s, t, i) ORDER BY i`,
          [sql(cfg.tables.include), sql(cfg.tables.exclude), pairs.map((p) => p[0]), pairs.map((p) => p[1])],
        );
        return rows.map((r) => r.m);
      });
      pairs.forEach(([s, t], i) => {
        expect(got[i], `${JSON.stringify(set)} ${JSON.stringify(s)}.${JSON.stringify(t)}`).toBe(matchTable(cfg, s, t));
        compared++;
      });
    }
    expect(compared).toBe(PATTERN_SETS.length * HOSTILE_SCHEMAS.length * HOSTILE_TABLES.length);
  });
});
