/**
 * The tables whose definitions the stream loads at its start (src/source/setup.ts
 * publishedRelids) are the ones the publication sends, as the pg_publication_tables view lists
 * them: plain tables with names that need quoting, and a partitioned table's leaves, or its root
 * once publish_via_partition_root is on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../harness/pg.js';
import { publishedRelids } from '../../src/source/setup.js';

describe('publishedRelids', () => {
  let db: { url: string; drop(): Promise<void> };
  let c: pg.Client;
  beforeAll(async () => {
    db = await createTestDatabase('pubrel');
    c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query(`CREATE SCHEMA "Odd.Schema";
      CREATE TABLE plain (id int PRIMARY KEY);
      CREATE TABLE "Odd.Schema"."Mixed ""Name""" (id int PRIMARY KEY);
      CREATE TABLE left_out (id int PRIMARY KEY);
      CREATE TABLE parted (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
      CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
      CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
      CREATE PUBLICATION pub FOR TABLE plain, "Odd.Schema"."Mixed ""Name""", parted;
      CREATE PUBLICATION empty_pub;`);
  });
  afterAll(async () => {
    await c?.end().catch(() => undefined);
    await db?.drop();
  });

  const viaView = async (pub: string) =>
    (await c.query<{ oid: number }>(`SELECT format('%I.%I', schemaname, tablename)::regclass::oid::int AS oid FROM pg_publication_tables WHERE pubname = $1`, [pub])).rows.map((r) => r.oid).sort();
  const oids = async (...names: string[]) =>
    (await c.query<{ oid: number }>(`SELECT n::regclass::oid::int AS oid FROM unnest($1::text[]) n`, [names])).rows.map((r) => r.oid).sort();

  it('lists the leaves of a partitioned table, and its root with publish_via_partition_root', async () => {
    const leaves = await oids('plain', '"Odd.Schema"."Mixed ""Name"""', 'parted_a', 'parted_b');
    expect((await publishedRelids(c, 'pub')).sort()).toEqual(leaves);
    expect(await viaView('pub')).toEqual(leaves);
    await c.query(`ALTER PUBLICATION pub SET (publish_via_partition_root = true)`);
    const roots = await oids('plain', '"Odd.Schema"."Mixed ""Name"""', 'parted');
    expect((await publishedRelids(c, 'pub')).sort()).toEqual(roots);
    expect(await viaView('pub')).toEqual(roots);
    expect(await publishedRelids(c, 'empty_pub')).toEqual([]);
  });
});
