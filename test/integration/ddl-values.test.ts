/**
 * DDL that changes the text of existing rows without any row change in the WAL (SPEC §6) reloads
 * the table at the DDL's own position, and a rolled-back one does nothing; DDL that keeps the
 * values (a nullable column without default, a widening type) costs no reload. Names that move
 * (RENAME COLUMN, RENAME TABLE, DROP + CREATE of the same name) leave the §6 rebuild exact. Each
 * case runs under a writer and is checked by rebuilding the table from the files.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/pg.js';
import { parseLsn } from '../../src/lsn.js';
import { createEnv, currentWalLsn, loopWriter, readStreamingRows, rebuildFromOutput, sleep, sortedEntries, sourceRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv } from '../helpers/egress.js';
import { WRITER_PAUSE_MS } from '../helpers/scale.js';

const ROWS = 2000;

interface DdlReload {
  requested: string;
  state: string;
}

async function ddlReloads(env: EgressEnv, table: string): Promise<DdlReload[]> {
  return withDb(env.url, async (c) =>
    (await c.query<DdlReload>(`SELECT requested_lsn::text AS requested, state FROM cdc_registry.reloads WHERE table_name = $1 AND reason = 'ddl' ORDER BY id`, [table])).rows,
  );
}

async function columnsOf(env: EgressEnv, table: string): Promise<string[]> {
  return withDb(env.url, async (c) =>
    (await c.query<{ n: string }>(`SELECT attname AS n FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [table])).rows.map((r) => r.n),
  );
}

async function expectRebuilt(env: EgressEnv, table: string, key = ['id']): Promise<void> {
  const columns = await columnsOf(env, table);
  const { table: rebuilt } = rebuildFromOutput(env.outDir, `public.${table}`, key, columns);
  // ONLY: an inheritance parent's own rows, as it is published and exported.
  const source = await sourceRows(env.url, `ONLY public."${table}"`, key, columns);
  expect(source.size).toBeGreaterThan(0);
  expect(sortedEntries(rebuilt)).toEqual(sortedEntries(source));
}

function ddlText(env: EgressEnv, table: string): string {
  const base = path.join(env.outDir, `public.${table}`);
  if (!existsSync(base)) return '';
  return readdirSync(base)
    .sort()
    .map((w) => path.join(base, w, 'ddl.sql'))
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f, 'utf8'))
    .join('');
}

describe('value-changing DDL', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  let writer: { stop(): Promise<number> } | null = null;

  /** Updates, inserts and deletes on items and tt, by columns no DDL below touches. */
  const startWriter = () => {
    if (writer) throw new Error('a writer is already running');
    writer = loopWriter(env.url, async (c, n) => {
      const id = 1 + ((n * 7919) % ROWS);
      await c.query('BEGIN');
      await c.query(`UPDATE items SET price = price + 1 WHERE id = $1`, [id]);
      await c.query(`INSERT INTO items (id, price) VALUES ($1, 1.5) ON CONFLICT (id) DO NOTHING`, [ROWS + 1 + n]);
      await c.query(`DELETE FROM items WHERE id = $1`, [ROWS + n]);
      await c.query(`UPDATE tt SET b = b + 1 WHERE a = $1`, [1 + (n % 50)]);
      await c.query('COMMIT');
      // Paced (a few hundred transactions a second): what matters is a writer around each DDL,
      // not how much it writes; flat out, it took a core from the files running beside this one.
      await sleep(WRITER_PAUSE_MS);
      return 1;
    });
  };
  const stopWriter = async () => {
    const w = writer;
    writer = null;
    return (await w?.stop()) ?? 0;
  };

  beforeAll(async () => {
    env = await createEnv({ prefix: 'ddlv' });
    await withDb(env.url, (c) =>
      c.query(`CREATE TYPE mood AS ENUM ('sad', 'ok');
               CREATE TYPE pair AS (x int, y int);
               CREATE TYPE comp2 AS (a int, b numeric(10,2));
               CREATE TABLE items (id int PRIMARY KEY, name varchar(20), price numeric(10,2), m mood, p pair, note text);
               INSERT INTO items SELECT g, 'item ' || g, g * 0.25, CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'ok' END::mood, ROW(g, g)::pair, 'note ' || g FROM generate_series(1, ${ROWS}) g;
               CREATE TABLE tt OF comp2 (PRIMARY KEY (a));
               INSERT INTO tt SELECT g, g * 0.5 FROM generate_series(1, 50) g;
               CREATE TABLE addr (id int PRIMARY KEY, street text);
               CREATE TABLE cust (id int PRIMARY KEY, home addr);
               INSERT INTO cust SELECT g, ROW(g, 'street ' || g)::addr FROM generate_series(1, 100) g;
               CREATE TABLE gone (id int PRIMARY KEY, v text);
               INSERT INTO gone SELECT g, 'old ' || g FROM generate_series(1, 100) g;
               CREATE TABLE ip (id int PRIMARY KEY, v text);
               INSERT INTO ip SELECT g, 'p' || g FROM generate_series(1, 50) g;
               CREATE TABLE r1 (id int PRIMARY KEY, v text);
               INSERT INTO r1 SELECT g, 'r1 ' || g FROM generate_series(1, 100) g;`),
    );
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await waitFor('initial export done', () =>
      withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state <> 'done'`)).rowCount === 0 && (await c.query(`SELECT 1 FROM cdc_registry.reloads`)).rowCount! >= 4),
      { timeoutMs: 60_000 },
    );
  }, 120_000);

  afterEach(async () => {
    await stopWriter().catch(() => undefined);
  });

  afterAll(async () => {
    await stopWriter().catch(() => undefined);
    await daemon?.stop();
    await env?.drop();
  });

  const valueChanging: [string, string][] = [
    ['items', `ALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 7`],
    ['items', `ALTER TABLE items ALTER COLUMN price TYPE numeric(10,3)`],
    ['items', `ALTER TABLE items ALTER COLUMN name TYPE text USING upper(name)`],
    ['items', `ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'`],
    ['items', `ALTER TYPE pair ADD ATTRIBUTE z int`],
    ['tt', `ALTER TYPE comp2 ALTER ATTRIBUTE b TYPE numeric(10,3) CASCADE`],
    ['items', `ALTER TABLE items DROP COLUMN note; ALTER TABLE items ADD COLUMN note text`],
    ['items', `ALTER TABLE items RENAME COLUMN qty TO quantity`],
    // A table's row type as another table's column type: ALTER TABLE of the first changes the second's text.
    ['cust', `ALTER TABLE addr ADD COLUMN zip text`],
  ];

  for (const [table, sql] of valueChanging) {
    it(`${sql}: one reload at the DDL's position, the table rebuilds equal to the source; rolled back, none`, async () => {
      startWriter();
      const before = (await ddlReloads(env, table)).length;
      await withDb(env.url, (c) => c.query(`BEGIN; ${sql}; ROLLBACK`));
      // A later transaction, flushed after the rolled-back one's position.
      await withDb(env.url, (c) => c.query(`UPDATE items SET price = price WHERE id = 1`));
      await waitCaughtUp(env);
      expect(await ddlReloads(env, table)).toHaveLength(before);
      const from = await currentWalLsn(env.url);
      // The settings pg-egress's own SQL uses are open to any session: they must not switch the check off.
      await withDb(env.url, (c) => c.query(`BEGIN; SET LOCAL pg_egress.restoring = 'on'; SET LOCAL pg_egress.rewritten = ''; ${sql}; COMMIT`));
      const to = await currentWalLsn(env.url);
      const ops = await waitFor(`the DDL reload of ${table} done`, async () => {
        const r = await ddlReloads(env, table);
        return r.length === before + 1 && r[before].state === 'done' ? r : null;
      }, { timeoutMs: 60_000 });
      const reqLsn = parseLsn(ops[before].requested);
      // The request is the DDL transaction's commit position: after the LSN before it, before the one after.
      expect(reqLsn > from && reqLsn <= to).toBe(true);
      expect(ddlText(env, table)).toContain('-- pg-egress: reload requested: ');
      expect(await stopWriter()).toBeGreaterThan(0);
      await waitCaughtUp(env);
      await expectRebuilt(env, table, table === 'tt' ? ['a'] : ['id']);
    }, 120_000);
  }

  it('same_text_cast: the casts known to keep the text of every value, and only those', async () => {
    const cases: [string, string, boolean][] = [
      ['varchar(10)', 'varchar(20)', true],
      ['varchar(10)', 'text', true],
      ['text', 'varchar(5)', true],
      ['int2', 'int8', true],
      ['int4', 'int8', true],
      ['int8', 'int4', false],
      ['int4', 'numeric', true],
      ['int4', 'numeric(10,2)', false],
      ['numeric(10,2)', 'numeric(12,2)', true],
      ['numeric(10,2)', 'numeric', true],
      ['numeric(10,2)', 'numeric(10,3)', false],
      ['numeric', 'numeric(10,2)', false],
      ['timestamp(3)', 'timestamp(6)', true],
      ['timestamp(6)', 'timestamp(3)', false],
      ['timestamp', 'timestamptz', false],
      ['float4', 'float8', false],
      ['char(5)', 'char(10)', false],
      ['text', 'bytea', false],
    ];
    const got = await withDb(env.url, async (c) => {
      const out: [string, string, boolean][] = [];
      for (const [a, b] of cases) {
        await c.query(`DROP TABLE IF EXISTS pg_temp.cast_probe; CREATE TEMP TABLE cast_probe (a ${a}, b ${b})`);
        const r = await c.query<{ same: boolean }>(
          `SELECT cdc_registry.same_text_cast(x.atttypid, x.atttypmod, y.atttypid, y.atttypmod) AS same
             FROM pg_attribute x, pg_attribute y
            WHERE x.attrelid = 'pg_temp.cast_probe'::regclass AND x.attname = 'a' AND y.attrelid = x.attrelid AND y.attname = 'b'`,
        );
        out.push([a, b, r.rows[0].same]);
      }
      return out;
    });
    expect(got).toEqual(cases);
  });

  it('DDL that keeps every value (a nullable column, a widening type) costs no reload', async () => {
    const before = (await ddlReloads(env, 'items')).length;
    startWriter();
    await withDb(env.url, (c) => c.query(`ALTER TABLE items ADD COLUMN extra text; ALTER TABLE items ALTER COLUMN quantity TYPE bigint; ALTER TYPE mood ADD VALUE 'great'`));
    await stopWriter();
    await waitCaughtUp(env);
    expect((await ddlReloads(env, 'items')).length).toBe(before);
    await expectRebuilt(env, 'items');
  }, 120_000);

  it('the ddl.sql of a value-changing DDL says why the table is exported again', () => {
    const text = ddlText(env, 'items');
    expect(text).toContain('-- pg-egress: reload requested: column qty added with a default (integer)');
    expect(text).toContain('-- pg-egress: reload requested: column price type numeric(10,2) -> numeric(10,3)');
    expect(text).toContain('-- pg-egress: reload requested: column qty renamed to quantity');
    expect(text).toContain('column note added in place of a dropped column of the same name');
    expect(text).toMatch(/-- pg-egress: reload requested: column m \(public\.mood\): enum public\.mood value \d+ = 'sad' changed/);
  });

  it('DROP TABLE + CREATE TABLE of the same name: the new table rebuilds without the old rows', async () => {
    await withDb(env.url, (c) => c.query(`DROP TABLE gone; CREATE TABLE gone (id int PRIMARY KEY, v text); INSERT INTO gone VALUES (1, 'new 1'), (500, 'new 500')`));
    await withDb(env.url, (c) => c.query(`INSERT INTO gone VALUES (501, 'later')`));
    await waitCaughtUp(env);
    const { table } = rebuildFromOutput(env.outDir, 'public.gone', ['id'], ['id', 'v']);
    expect(table.size).toBe(3);
    await expectRebuilt(env, 'gone');
  }, 60_000);

  it('RENAME TABLE: the new name is exported, the old name ends, a table created under it starts empty', async () => {
    await withDb(env.url, (c) => c.query(`ALTER TABLE r1 RENAME TO r2`));
    await waitFor('r2 exported', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE table_name = 'r2' AND reason = 'ddl' AND state = 'done'`)).rowCount === 1), { timeoutMs: 60_000 });
    await withDb(env.url, (c) => c.query(`UPDATE r2 SET v = 'moved' WHERE id = 1; CREATE TABLE r1 (id int PRIMARY KEY, v text); INSERT INTO r1 VALUES (7, 'fresh')`));
    await waitCaughtUp(env);
    await expectRebuilt(env, 'r2');
    await expectRebuilt(env, 'r1');
    expect(rebuildFromOutput(env.outDir, 'public.r1', ['id'], ['id', 'v']).table.size).toBe(1);
  }, 90_000);

  it('REPLICA IDENTITY FULL and back to DEFAULT under a writer that deletes: captured exactly, no reload', async () => {
    const before = (await ddlReloads(env, 'items')).length;
    startWriter();
    await withDb(env.url, (c) => c.query(`ALTER TABLE items REPLICA IDENTITY FULL`));
    await waitCaughtUp(env);
    await withDb(env.url, (c) => c.query(`ALTER TABLE items REPLICA IDENTITY DEFAULT`));
    expect(await stopWriter()).toBeGreaterThan(0);
    await waitCaughtUp(env);
    expect((await ddlReloads(env, 'items')).length).toBe(before);
    await expectRebuilt(env, 'items');
  }, 90_000);

  it('ALTER on an inheritance parent that fills a column reloads the parent and each child', async () => {
    // The child joins after the parent (`ALTER PUBLICATION ... ADD TABLE ip` at start would take the
    // children of that moment with it, and reconcile_publication then fails adding them again).
    await withDb(env.url, (c) => c.query(`CREATE TABLE ic (extra int, PRIMARY KEY (id)) INHERITS (ip); INSERT INTO ic SELECT g, 'c' || g, g FROM generate_series(101, 150) g`));
    startWriter();
    await withDb(env.url, (c) => c.query(`ALTER TABLE ip ADD COLUMN w int NOT NULL DEFAULT 3`));
    for (const t of ['ip', 'ic']) {
      await waitFor(`${t} reloaded`, async () => (await ddlReloads(env, t)).some((r) => r.state === 'done'), { timeoutMs: 60_000 });
    }
    await withDb(env.url, (c) => c.query(`UPDATE ic SET v = 'after' WHERE id = 101`));
    await stopWriter();
    await waitCaughtUp(env);
    await expectRebuilt(env, 'ip');
    await expectRebuilt(env, 'ic');
  }, 90_000);

  it('the reasons of less common value-changing DDL, and none for a stored generated column', async () => {
    const slot = `peek_${env.slot}`.slice(0, 63);
    await withDb(env.url, (c) => c.query(`CREATE TABLE g6 (id int PRIMARY KEY, a int, g int GENERATED ALWAYS AS (a * 2) STORED); INSERT INTO g6 VALUES (1, 5); CREATE DOMAIN d5 AS int DEFAULT 5`));
    await withDb(env.url, (c) => c.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [slot]));
    try {
      for (const sql of [
        `ALTER TABLE g6 ALTER COLUMN g DROP EXPRESSION`,
        `ALTER TABLE g6 ADD COLUMN idn int GENERATED ALWAYS AS IDENTITY`,
        `ALTER TABLE g6 ADD COLUMN dd d5`,
        `ALTER TABLE g6 ADD COLUMN g2 int GENERATED ALWAYS AS (a * 3) STORED`,
        `ALTER TABLE g6 ADD COLUMN r float8 DEFAULT random()`,
      ]) await withDb(env.url, (c) => c.query(sql));
      const details = await waitFor('five DDL messages decoded', () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query<{ data: string }>(`SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL)`, [slot]);
          if (rows.filter((r) => r.data.includes('prefix: pg-egress:ddl,')).length < 5) return null;
          return rows.filter((r) => r.data.includes('prefix: pg-egress:reload,')).map((r) => (JSON.parse(r.data.slice(r.data.indexOf('\n') + 1)) as { detail: string }).detail);
        }),
      );
      expect(details).toEqual(['column g is no longer generated', 'column idn added with a default (integer)', 'column dd added with a default (public.d5)', 'column r added with a default (double precision)']);
    } finally {
      await withDb(env.url, (c) => c.query(`SELECT pg_drop_replication_slot($1)`, [slot]));
    }
  }, 60_000);

  it('REPLICA IDENTITY USING INDEX: delete rows carry that index, by which the table rebuilds exactly', async () => {
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE ri (id int PRIMARY KEY, code text NOT NULL UNIQUE, v text);
               INSERT INTO ri SELECT g, 'c' || g, 'v' || g FROM generate_series(1, 200) g;
               ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code_key;
               UPDATE ri SET v = 'changed' WHERE id % 3 = 0;
               DELETE FROM ri WHERE id % 5 = 0;
               INSERT INTO ri VALUES (1000, 'c1000', 'late');`),
    );
    await waitCaughtUp(env);
    const deletes = readStreamingRows(env.outDir, 'public.ri').rows.filter((r) => r.op === 'D');
    expect(deletes).toHaveLength(40);
    // The identity's columns, and only those: its non-empty fields.
    for (const d of deletes) expect([...d.values].filter(([, val]) => val !== null).map(([k]) => k)).toEqual(['code']);
    await expectRebuilt(env, 'ri', ['code']);
  }, 60_000);
});
