/**
 * Inserts, updates (also of the key), deletes under REPLICA IDENTITY DEFAULT and FULL, TRUNCATE,
 * unchanged TOAST, ALTER TABLE mid-window, and odd names.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createEnv, readStreamingRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv, type StreamRow } from '../helpers/egress.js';

const v = (r: StreamRow, c: string) => r.values.get(c)?.toString() ?? null;
const brief = (rows: StreamRow[], cols: string[]) => rows.map((r) => [r.op, ...cols.map((c) => v(r, c))]);

describe('operations', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, async (c) => {
      await c.query(`
        CREATE TABLE ops_default (id int PRIMARY KEY, v text);
        CREATE TABLE ops_full (id int PRIMARY KEY, v text);
        ALTER TABLE ops_full REPLICA IDENTITY FULL;
        CREATE TABLE ops_full_nopk (a int, b text);
        ALTER TABLE ops_full_nopk REPLICA IDENTITY FULL;
        CREATE TABLE trunc (id int PRIMARY KEY);
        CREATE TABLE rolled (id int PRIMARY KEY);
        CREATE TABLE late_ddl (id int PRIMARY KEY, gone text);
        CREATE TABLE toasty (id int PRIMARY KEY, n int, body text);
        CREATE TABLE evolving (id int PRIMARY KEY, b text);
        CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
        CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
        CREATE SCHEMA "My Schema";
        CREATE TABLE "My Schema"."Weird ""Name"", x" ("my col" int PRIMARY KEY, "Other, ""col""" text);`);
    });
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await withDb(env.url, async (c) => {
      await c.query(`INSERT INTO ops_default VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
      await c.query(`UPDATE ops_default SET v = 'a2' WHERE id = 1`);
      await c.query(`UPDATE ops_default SET id = 20 WHERE id = 2`);
      await c.query(`DELETE FROM ops_default WHERE id = 3`);

      await c.query(`INSERT INTO ops_full VALUES (1, 'a'), (2, 'b')`);
      await c.query(`UPDATE ops_full SET v = 'a2' WHERE id = 1`);
      await c.query(`UPDATE ops_full SET id = 20 WHERE id = 2`);
      await c.query(`DELETE FROM ops_full WHERE id = 1`);

      await c.query(`INSERT INTO ops_full_nopk VALUES (1, 'x')`);
      await c.query(`UPDATE ops_full_nopk SET b = 'y'`);

      await c.query(`INSERT INTO trunc SELECT generate_series(1, 3)`);
      await c.query(`TRUNCATE trunc`);
      await c.query(`INSERT INTO trunc VALUES (9)`);

      await c.query(`INSERT INTO toasty VALUES (1, 0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g))`);
      await c.query(`UPDATE toasty SET n = 1 WHERE id = 1`);

      // Columns change inside one transaction, hence inside one window.
      await c.query(`BEGIN;
        INSERT INTO evolving VALUES (1, 'before');
        ALTER TABLE evolving ADD COLUMN c text;
        INSERT INTO evolving VALUES (2, 'middle', 'c2');
        ALTER TABLE evolving DROP COLUMN b;
        INSERT INTO evolving VALUES (3, 'c3');
        COMMIT;`);

      await c.query(`INSERT INTO "My Schema"."Weird ""Name"", x" VALUES (1, 'a,"b"')`);
      await c.query(`INSERT INTO parted VALUES (1, 'eu'), (2, 'us')`);
      // Rolled back: neither its DDL nor its rows appear anywhere.
      await c.query(`BEGIN; ALTER TABLE rolled ADD COLUMN ghost text; INSERT INTO rolled VALUES (666, 'boo'); ROLLBACK;`);
      await c.query(`INSERT INTO rolled VALUES (1)`);
      // Columns change after the window's last row of the table.
      await c.query(`BEGIN; INSERT INTO late_ddl VALUES (1, 'x'); ALTER TABLE late_ddl ADD COLUMN z int NOT NULL DEFAULT 7, DROP COLUMN gone; COMMIT;`);

      // A table created while streaming, filled by its creating transaction, later dropped.
      await c.query(`BEGIN;
        CREATE TABLE born_later (id int PRIMARY KEY, v text);
        INSERT INTO born_later VALUES (1, 'first'), (2, 'second');
        COMMIT;`);
      await c.query(`INSERT INTO born_later VALUES (3, 'third')`);
      await c.query(`DROP TABLE born_later`);
    });
    await waitCaughtUp(env);
    await daemon.stop();
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('REPLICA IDENTITY DEFAULT: key change is D + U, delete carries the key only', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.ops_default');
    expect(brief(rows, ['id', 'v'])).toEqual([
      ['I', '1', 'a'],
      ['I', '2', 'b'],
      ['I', '3', 'c'],
      ['U', '1', 'a2'],
      ['D', '2', null],
      ['U', '20', 'b'],
      ['D', '3', null],
    ]);
    // D and U of one key change are consecutive in one transaction.
    expect(rows[4].lsn).toBe(rows[5].lsn);
    expect([rows[4].seq, rows[5].seq]).toEqual([0, 1]);
    // Commit order.
    const lsns = rows.map((r) => r.lsn);
    expect([...lsns].sort()).toEqual(lsns);
  });

  it('REPLICA IDENTITY FULL: delete carries the old row, key change is D(old row) + U', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.ops_full');
    expect(brief(rows, ['id', 'v'])).toEqual([
      ['I', '1', 'a'],
      ['I', '2', 'b'],
      ['U', '1', 'a2'],
      ['D', '2', 'b'],
      ['U', '20', 'b'],
      ['D', '1', 'a2'],
    ]);
  });

  it('REPLICA IDENTITY FULL without a primary key: every update is D + U', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.ops_full_nopk');
    expect(brief(rows, ['a', 'b'])).toEqual([
      ['I', '1', 'x'],
      ['D', '1', 'x'],
      ['U', '1', 'y'],
    ]);
  });

  it('TRUNCATE is a T row without values', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.trunc');
    expect(brief(rows, ['id'])).toEqual([['I', '1'], ['I', '2'], ['I', '3'], ['T', null], ['I', '9']]);
  });

  it('an update that leaves a TOASTed column unchanged names it in _unchanged', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.toasty');
    expect(rows.map((r) => [r.op, r.unchanged, v(r, 'n')])).toEqual([
      ['I', null, '0'],
      ['U', '{body}', '1'],
    ]);
    expect(v(rows[0], 'body')!.length).toBe(128_000);
    expect(rows[1].values.get('body')).toBeNull();
  });

  it('ALTER TABLE mid-window: final columns in header and schema.yml, DDL in ddl.sql', () => {
    const { header, rows } = readStreamingRows(env.outDir, 'public.evolving');
    expect(header).toHaveLength(1);
    expect(header[0].slice(6)).toEqual(['id', 'c']);
    expect(brief(rows, ['id', 'c'])).toEqual([
      ['I', '1', null],
      ['I', '2', 'c2'],
      ['I', '3', 'c3'],
    ]);
    const dir = path.join(env.outDir, 'public.evolving', rows[0].batch);
    const ddl = readFileSync(path.join(dir, 'ddl.sql'), 'utf8');
    expect(ddl).toMatch(/: ALTER TABLE\n.*ADD COLUMN c text/s);
    expect(ddl).toContain('DROP COLUMN b');
    const yml = readFileSync(path.join(dir, 'schema.yml'), 'utf8');
    expect(yml).toContain('{name: c, type: text');
    expect(yml).not.toContain('{name: b,');
  });

  it('odd schema and table names get a safe folder and stream correctly', () => {
    const folder = 'My Schema.Weird "Name", x';
    expect(readdirSync(env.outDir)).toContain(folder);
    const { header, rows } = readStreamingRows(env.outDir, folder);
    expect(header[0].slice(6)).toEqual(['my col', 'Other, "col"']);
    expect(brief(rows, ['my col', 'Other, "col"'])).toEqual([['I', '1', 'a,"b"']]);
    const yml = readFileSync(path.join(env.outDir, folder, rows[0].batch, 'schema.yml'), 'utf8');
    expect(yml).toContain('table: {schema: "My Schema", name: "Weird \\"Name\\", x"');
  });

  it('captures a table created later from its first row, and stops cleanly when it is dropped', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.born_later');
    expect(brief(rows, ['id', 'v'])).toEqual([
      ['I', '1', 'first'],
      ['I', '2', 'second'],
      ['I', '3', 'third'],
      // DROP TABLE ends the name's rows (a table created later under it starts empty).
      ['T', null, null],
    ]);
    const batches = readdirSync(path.join(env.outDir, 'public.born_later')).sort();
    const ddl = batches
      .map((b) => path.join(env.outDir, 'public.born_later', b, 'ddl.sql'))
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f, 'utf8'))
      .join('');
    expect(ddl).toContain('CREATE TABLE born_later');
    expect(ddl).toContain('DROP TABLE born_later');
  });

  it('columns changed after the last row still give the end-of-window header and schema.yml', () => {
    const { header, rows } = readStreamingRows(env.outDir, 'public.late_ddl');
    expect(header).toHaveLength(1);
    expect(header[0].slice(6)).toEqual(['id', 'z']);
    expect(brief(rows, ['id', 'z'])).toEqual([['I', '1', null]]);
    const yml = readFileSync(path.join(env.outDir, 'public.late_ddl', rows[0].batch, 'schema.yml'), 'utf8');
    expect(yml).toContain('  - {name: z, type: integer, type_oid: 23, nullable: false}');
    expect(yml).not.toContain('gone');
  });

  it('a rolled-back transaction leaves no DDL and no rows', () => {
    const { header, rows } = readStreamingRows(env.outDir, 'public.rolled');
    expect(header[0].slice(6)).toEqual(['id']);
    expect(brief(rows, ['id'])).toEqual([['I', '1']]);
    for (const b of readdirSync(path.join(env.outDir, 'public.rolled'))) {
      expect(existsSync(path.join(env.outDir, 'public.rolled', b, 'ddl.sql'))).toBe(false);
    }
  });

  it('publishes a partitioned table as its leaves; the root folder holds no data file', () => {
    expect(brief(readStreamingRows(env.outDir, 'public.parted_eu').rows, ['id', 'region'])).toEqual([['I', '1', 'eu']]);
    expect(brief(readStreamingRows(env.outDir, 'public.parted_us').rows, ['id', 'region'])).toEqual([['I', '2', 'us']]);
    expect(readStreamingRows(env.outDir, 'public.parted').rows).toEqual([]);
  });

  it('writes files 0600 in folders 0700 and a batch index per flush', () => {
    const { rows } = readStreamingRows(env.outDir, 'public.ops_default');
    const dir = path.join(env.outDir, 'public.ops_default', rows[0].batch);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(dir, 'streaming.csv.gz')).mode & 0o777).toBe(0o600);
    const batches = readdirSync(path.join(env.outDir, '_batches'));
    expect(batches).toContain(`${rows[0].batch}.json`);
    const index = JSON.parse(readFileSync(path.join(env.outDir, '_batches', `${rows[0].batch}.json`), 'utf8'));
    expect(index.manifests.some((m: { path: string }) => m.path === `public.ops_default/${rows[0].batch}/manifest.json`)).toBe(true);
  });
});
