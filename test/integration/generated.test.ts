/**
 * Generated columns are in no file, on every server version: the files have the columns that
 * `COPY table TO` prints. PostgreSQL 18 can send stored generated columns through pgoutput (the
 * publication's `publish_generated_columns = stored`) and adds VIRTUAL generated columns (the
 * default kind there); the publication we create leaves them out, and a publication changed by
 * hand to send them changes nothing in the files.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/pg.js';
import {
  copyOut,
  createEnv,
  listStreamingFiles,
  readStreamingRows,
  rebuildFromOutput,
  reloadSets,
  sortedEntries,
  sourceRows,
  startInProcess,
  waitCaughtUp,
  waitSlotActive,
  withDb,
  type EgressEnv,
} from '../helpers/egress.js';

const META = ['_lsn', '_seq', '_xid', '_commit_ts', '_op', '_unchanged'];

describe('generated columns', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  let major = 0;

  beforeAll(async () => {
    env = await createEnv();
    major = await withDb(env.url, async (c) => Number((await c.query(`SELECT current_setting('server_version_num')::int / 10000 AS m`)).rows[0].m));
    const virtual = major >= 18 ? ', v text GENERATED ALWAYS AS (upper(t)) VIRTUAL' : '';
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE g (id int PRIMARY KEY, a int, s int GENERATED ALWAYS AS (a * 2) STORED${virtual}, t text);
               INSERT INTO g (id, a, t) SELECT i, i, 'row ' || i FROM generate_series(1, 50) i;`),
    );
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('streams, reloads and describes a table with stored (and on 18 virtual) generated columns without them', async () => {
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`INSERT INTO g (id, a, t) VALUES (100, 7, 'x, "y"'); UPDATE g SET a = a + 1 WHERE id <= 10; DELETE FROM g WHERE id BETWEEN 41 AND 45`));
    await waitCaughtUp(env);

    if (major >= 18) {
      // Someone turns generated columns on in our publication: pgoutput then sends `s` (stored)
      // in Relation and tuple messages; the files must not change shape.
      await withDb(env.url, (c) => c.query(`ALTER PUBLICATION ${env.slot} SET (publish_generated_columns = stored)`));
      const sends = await withDb(env.url, async (c) => (await c.query(`SELECT pubgencols::text AS g FROM pg_publication WHERE pubname = $1`, [env.slot])).rows[0].g);
      expect(sends).toBe('s');
    }
    await withDb(env.url, (c) => c.query(`INSERT INTO g (id, a, t) VALUES (101, 8, NULL); UPDATE g SET t = 'changed' WHERE id BETWEEN 20 AND 25; DELETE FROM g WHERE id = 1`));
    // A generated column added mid-stream, then rows in the same window and after it.
    await withDb(env.url, (c) => c.query(`ALTER TABLE g ADD COLUMN s2 bigint GENERATED ALWAYS AS (a::bigint + id) STORED; INSERT INTO g (id, a, t) VALUES (102, 9, 'after ddl')`));
    await withDb(env.url, (c) => c.query(`UPDATE g SET a = a * 10 WHERE id > 95`));
    await waitCaughtUp(env);
    // A reload on request: its parts must equal COPY's output byte for byte.
    await withDb(env.url, (c) => c.query(`COMMENT ON TABLE g IS 'pg-egress:reload'`));
    await waitFor('the requested reload', async () => reloadSets(env.outDir, 'public.g').length >= 2, { timeoutMs: 60_000 });
    await withDb(env.url, (c) => c.query(`INSERT INTO g (id, a, t) VALUES (103, 3, 'last')`));
    await waitCaughtUp(env);
    await daemon.stop();

    const copyHeader = (await copyOut(env.url, 'COPY g TO STDOUT (FORMAT csv, HEADER)')).toString('utf8').split('\n')[0].split(',');
    expect(copyHeader).toEqual(['id', 'a', 't']);

    // Every streaming file has exactly COPY's columns after the metadata.
    const { header, rows } = readStreamingRows(env.outDir, 'public.g');
    expect(listStreamingFiles(env.outDir, 'public.g').length).toBeGreaterThan(0);
    for (const h of header) expect(h).toEqual([...META, ...copyHeader]);
    expect(rows.some((r) => r.op === 'U') && rows.some((r) => r.op === 'D') && rows.some((r) => r.op === 'I')).toBe(true);

    // Each reload set (the initial export and the requested one) has COPY's header; the newest
    // equals COPY of the table as it was then (nothing but id 103 changed since).
    const sets = reloadSets(env.outDir, 'public.g');
    for (const s of sets) {
      const text = zlib.gunzipSync(readFileSync(s.files[0])).toString('utf8');
      expect(text.split('\n')[0].split(',')).toEqual(copyHeader);
    }
    const newest = Buffer.concat(sets[sets.length - 1].files.map((f) => zlib.gunzipSync(readFileSync(f))));
    const copyNow = await copyOut(env.url, `COPY (SELECT id, a, t FROM g WHERE id <> 103) TO STDOUT (FORMAT csv, HEADER)`);
    expect(newest.toString('utf8')).toBe(copyNow.toString('utf8'));

    // The rebuild rule gives the source table back.
    const built = rebuildFromOutput(env.outDir, 'public.g', ['id'], copyHeader);
    expect(sortedEntries(built.table)).toEqual(sortedEntries(await sourceRows(env.url, 'g', ['id'], copyHeader)));

    // schema.yml names the generated columns, and lists them among the table's columns.
    const newestDir = path.dirname(listStreamingFiles(env.outDir, 'public.g').at(-1)!);
    const yml = readFileSync(path.join(newestDir, 'schema.yml'), 'utf8');
    expect(yml).toContain(major >= 18 ? 'generated_columns: [s, v, s2]' : 'generated_columns: [s, s2]');
  });
});
