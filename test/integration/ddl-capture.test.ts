/**
 * DDL capture switched off under the daemon is never silently absorbed: a superuser disables
 * pg-egress's value-changing-DDL event triggers and, before the daemon's next check, runs a DDL
 * that fills a new column in every existing row (no row change in the WAL, so nothing in the
 * stream says so). The daemon's check finds the triggers disabled, records a `ddl_capture` gap
 * over the range and exports the tables again; another such DDL while they stay disabled is
 * repaired the same way once they are enabled again. Each time the table rebuilds equal to the
 * source. Afterwards a value-changing DDL is captured as usual again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/pg.js';
import { createEnv, spawnCli, waitCaughtUp, waitSlotActive, withDb, type Child, type EgressEnv } from '../helpers/egress.js';
import { expectRebuiltEqual } from '../helpers/compare.js';

describe('DDL capture switched off', () => {
  let env: EgressEnv;
  let daemon: Child;

  beforeAll(async () => {
    env = await createEnv({ prefix: 'ddlcap', config: 'publication_check: 1s' });
    await withDb(env.url, (c) => c.query(`CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 500) g`));
    daemon = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await waitFor('the initial export', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE state = 'done'`)).rowCount === 1));
  }, 120_000);

  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
  });

  const gaps = () => withDb(env.url, async (c) => (await c.query<{ kind: string; resolved: boolean; detail: string }>(`SELECT kind, resolved_at IS NOT NULL AS resolved, detail FROM cdc_registry.gaps ORDER BY id`)).rows);
  const enabled = () => withDb(env.url, async (c) => (await c.query<{ n: string; e: string }>(`SELECT evtname AS n, evtenabled AS e FROM pg_event_trigger WHERE evtname LIKE 'pg_egress%' ORDER BY 1`)).rows.map((r) => `${r.n}:${r.e}`));

  it('disabled event triggers: a gap when found off and another when on again, each repaired by exporting again; rebuild equal', async () => {
    const before = await enabled();
    expect(before.length).toBeGreaterThanOrEqual(4);
    const resolvedGaps = async (n: number) => {
      const g = await waitFor(`${n} ddl_capture gaps, resolved by their exports`, async () => {
        const all = (await gaps()).filter((x) => x.kind === 'ddl_capture');
        return all.length === n && all.every((x) => x.resolved) ? all : null;
      });
      await waitCaughtUp(env);
      return g;
    };
    // The DBA's session: the triggers off, then a DDL that fills a column in every row.
    await withDb(env.url, (c) =>
      c.query(`ALTER EVENT TRIGGER pg_egress_values_ddl_end DISABLE; ALTER EVENT TRIGGER pg_egress_values_rewrite DISABLE;
               ALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 7; INSERT INTO items VALUES (501, 'after', 8)`),
    );
    const [first] = await resolvedGaps(1);
    expect(first.detail).toMatch(/^event triggers pg_egress_values_ddl_end, pg_egress_values_rewrite are disabled or dropped: a value-changing DDL between [0-9A-F]+\/[0-9A-F]+ and [0-9A-F]+\/[0-9A-F]+ may have changed rows/);
    expect(daemon.stdout()).toMatch(/data gap: event triggers pg_egress_values_ddl_end, pg_egress_values_rewrite are disabled or dropped.*; exporting every table again/);
    await expectRebuiltEqual(env.outDir, env.url, 'public.items', 'items', ['id'], ['id', 'v', 'qty']);
    // Still off: another such DDL, then the DBA enables them again.
    await withDb(env.url, (c) =>
      c.query(`ALTER TABLE items ALTER COLUMN v TYPE varchar(40) USING upper(v);
               ALTER EVENT TRIGGER pg_egress_values_ddl_end ENABLE; ALTER EVENT TRIGGER pg_egress_values_rewrite ENABLE`),
    );
    const [, second] = await resolvedGaps(2);
    expect(second.detail).toMatch(/^DDL capture was off .* between [0-9A-F]+\/[0-9A-F]+ and [0-9A-F]+\/[0-9A-F]+: a DDL made then may have changed rows/);
    expect(await enabled()).toEqual(before);
    await expectRebuiltEqual(env.outDir, env.url, 'public.items', 'items', ['id'], ['id', 'v', 'qty']);
    // Captured again: the next value-changing DDL is a reload at its own position, and no gap.
    await withDb(env.url, (c) => c.query(`ALTER TABLE items ADD COLUMN z int NOT NULL DEFAULT 3`));
    await waitFor('the DDL reload', () => withDb(env.url, async (c) => (await c.query(`SELECT 1 FROM cdc_registry.reloads WHERE reason = 'ddl' AND state = 'done'`)).rowCount === 1));
    await waitCaughtUp(env);
    await expectRebuiltEqual(env.outDir, env.url, 'public.items', 'items', ['id'], ['id', 'v', 'qty', 'z']);
    expect((await gaps()).map((g) => g.kind)).toEqual(['ddl_capture', 'ddl_capture']);
  }, 240_000);
});
