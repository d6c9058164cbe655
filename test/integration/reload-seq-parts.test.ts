/**
 * A table larger than its share of an export, within sixteen chunk sizes, is exported in parts of
 * its share read by sequential scans filtered by ctid (src/reload/planner.ts): the server plans
 * those conditions as a Seq Scan, not a TID Range Scan; the parts, unzipped and joined without
 * their repeated headers, are psql's COPY byte for byte; and the table rebuilds to the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import zlib from 'node:zlib';
import { ctidCondition } from '../../src/reload/planner.js';
import { copyOut, createEnv, rebuildFromOutput, reloadSets, sortedEntries, sourceRows, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';
import { waitReloads } from '../helpers/archive.js';

/** The plan of `SELECT * FROM ONLY t <where>`, as EXPLAIN prints it. */
async function plan(url: string, where: string): Promise<string> {
  return withDb(url, async (c) => (await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT * FROM ONLY halves${where}`)).rows.map((r) => r['QUERY PLAN']).join('\n'));
}

describe('an export in parts read by sequential scans', () => {
  let env: EgressEnv;
  let daemon: Child;
  // The ways an export splits on a local server: the workers (2 here), at most the cores.
  const ways = Math.min(2, availableParallelism());

  beforeAll(async () => {
    env = await createEnv();
    // 1 MB chunks: the table (~6 MB) is within sixteen of them, and over its share of two ways.
    writeConfig(env, 'reload:\n  workers: 2\n  chunk_size: 1MB');
    await withDb(env.url, (c) =>
      c.query(`
        CREATE TABLE halves (id int PRIMARY KEY, v text, n int, q text);
        INSERT INTO halves SELECT g, md5(g::text), g % 97, CASE WHEN g % 5 = 0 THEN NULL ELSE 'a "' || g || E'\\nb' END FROM generate_series(1, 60000) g;`),
    );
    await withDb(env.url, (c) => c.query('VACUUM ANALYZE halves'));
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitReloads(env.url, 1);
  }, 120_000);

  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  it('the server plans the parts as sequential scans, the TID range form as TID Range Scans', async () => {
    const seq = await plan(env.url, ctidCondition({ fromBlock: 100, toBlock: 200, seq: true }));
    expect(seq).toMatch(/Seq Scan on halves/);
    expect(seq).toMatch(/Filter: \(tidge\(ctid, '\(100,0\)'::tid\) AND tidlt\(ctid, '\(200,0\)'::tid\)\)/);
    expect(seq).not.toMatch(/Tid/);
    expect(await plan(env.url, ctidCondition({ fromBlock: 100, toBlock: 200 }))).toMatch(/Tid Range Scan on halves/);
  });

  it('the parts are the COPY of the whole table byte for byte, and the table rebuilds to the source', async () => {
    const [set] = reloadSets(env.outDir, 'public.halves');
    expect(set.files).toHaveLength(ways);
    const [op] = await withDb(env.url, async (c) => (await c.query<{ chunks: number }>(`SELECT chunks FROM cdc_registry.reloads WHERE table_name = 'halves'`)).rows);
    expect(op.chunks).toBe(ways);
    if (ways > 1) expect(daemon.stdout()).toMatch(/"chunks":2,"seq_scan_parts":2,"workers":2,"split_ways":2/);
    const parts = set.files.map((f) => zlib.gunzipSync(readFileSync(f)));
    const header = parts[0].subarray(0, parts[0].indexOf(0x0a) + 1);
    for (const p of parts) expect(p.subarray(0, header.length).equals(header)).toBe(true);
    // Every part holds rows: the split is not one part and an empty one.
    for (const p of parts) expect(p.length).toBeGreaterThan(header.length + 1_000_000 / ways);
    const joined = Buffer.concat([header, ...parts.map((p) => p.subarray(header.length))]);
    expect(joined.equals(await copyOut(env.url, 'COPY halves TO STDOUT (FORMAT csv, HEADER)'))).toBe(true);
    await waitCaughtUp(env);
    const got = rebuildFromOutput(env.outDir, 'public.halves', ['id'], ['id', 'v', 'n', 'q']);
    const want = await sourceRows(env.url, 'halves', ['id'], ['id', 'v', 'n', 'q']);
    expect(got.table.size).toBe(60_000);
    expect(sortedEntries(got.table)).toEqual(sortedEntries(want));
  });
});
