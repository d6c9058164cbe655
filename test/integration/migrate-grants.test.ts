/**
 * A registry made before a migration that adds a function the daemon calls (sql/019
 * table_definitions): the role that `init --url` granted the registry to can call it once the
 * registry is migrated, without another `init --url`; and the set-based definitions are the JSON
 * that table_definition() gives for one table (the event triggers' DDL messages use that one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { loadMigrations, migrate } from '../../src/registry/migrate.js';
import { grantRegistry } from '../../src/registry/install.js';
import { tableDefinitionsJson } from '../../src/registry/publication.js';
import { adminUrl } from '../harness/pg.js';
import { createEnv, withDb, type EgressEnv } from '../helpers/egress.js';

describe('registry migrations and the daemon role', () => {
  let env: EgressEnv;
  const role = `egress_mig_${randomBytes(4).toString('hex')}`;
  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) =>
      c.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw';
               CREATE TABLE items (id int, "Odd Name" varchar(5) NOT NULL, g int GENERATED ALWAYS AS (id * 2) STORED, gone int, PRIMARY KEY ("Odd Name", id));
               ALTER TABLE items DROP COLUMN gone`),
    );
  });
  afterAll(async () => {
    await env?.drop();
    await withDb(adminUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role}`)).catch(() => undefined);
  });

  it("a role granted the registry before sql/019 reads tables' definitions after it, the JSON table_definition() gives", async () => {
    await withDb(env.url, async (c) => {
      await migrate(c, loadMigrations().filter((m) => m.version < 19));
      await c.query(`INSERT INTO cdc_registry.settings (publication) VALUES ('p')`);
      await grantRegistry(c, role, 'p', []);
      expect(await migrate(c)).toContain(19);
    });
    const u = new URL(env.url);
    u.username = role;
    u.password = 'pw';
    await withDb(u.toString(), async (c) => {
      const relid = Number((await c.query<{ o: string }>(`SELECT 'items'::regclass::oid::text AS o`)).rows[0].o);
      // 1: no such table, left out; the order asked is kept.
      const defs = await tableDefinitionsJson(c, [relid, 1, relid]);
      expect(defs).toHaveLength(2);
      const one = (await c.query<{ d: string }>(`SELECT cdc_registry.table_definition($1)::text AS d`, [relid])).rows[0].d;
      expect(defs).toEqual([one, one]);
      expect(JSON.parse(one)).toMatchObject({
        table: 'items',
        primary_key: ['Odd Name', 'id'],
        columns: [
          { name: 'id', type: 'integer', nullable: false, generated: false },
          { name: 'Odd Name', type: 'character varying(5)', nullable: false, generated: false },
          { name: 'g', type: 'integer', nullable: true, generated: true },
        ],
      });
    });
  });
});
