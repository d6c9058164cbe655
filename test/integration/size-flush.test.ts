/**
 * An early flush by batch.max_rows keeps its window's name and appends -001, -002, ... so that
 * names sort in commit order (SPEC §3); every row is in exactly one of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { waitReloads } from '../helpers/archive.js';
import { createEnv, readStreamingRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

describe('size-triggered flushes', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;

  beforeAll(async () => {
    env = await createEnv();
    // An hour-long window, so only the row limit cuts it.
    writeConfig(env, 'batch:\n  interval: 1h\n  max_rows: 2');
    await withDb(env.url, (c) => c.query('CREATE TABLE t (id int PRIMARY KEY)'));
    daemon = startInProcess(env);
    await waitSlotActive(env);
    await withDb(env.url, async (c) => {
      for (let i = 0; i < 4; i++) await c.query(`INSERT INTO t VALUES (${2 * i + 1}), (${2 * i + 2})`);
    });
    await waitCaughtUp(env);
    // The table's initial export too: stopped before it registers, it leaves no folder (seen once
    // on a loaded machine: 4 names), and this test never starts the daemon again.
    await waitReloads(env.url, 1);
    await daemon.stop();
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('names later flushes of a window <window>-NNN, in commit order, each row once', () => {
    // Four flushes and the table's initial export: flushes and reloads share a window's names.
    const names = readdirSync(path.join(env.outDir, 'public.t')).sort();
    expect(names).toHaveLength(5);
    expect(names.filter((n) => existsSync(path.join(env.outDir, 'public.t', n, 'streaming.csv.gz')))).toHaveLength(4);
    expect(names.filter((n) => existsSync(path.join(env.outDir, 'public.t', n, 'full_reload.csv.gz')))).toHaveLength(1);
    // Group by window (an hour boundary could fall inside the test): base name first, then -001, -002...
    const groups = new Map<string, string[]>();
    for (const n of names) {
      const base = n.slice(0, 16);
      groups.set(base, [...(groups.get(base) ?? []), n]);
    }
    for (const [base, list] of groups) {
      expect(list).toEqual(list.map((_, i) => (i === 0 ? base : `${base}-${String(i).padStart(3, '0')}`)));
    }
    // One batch index per flush. (Their file names do not sort in commit order: '-' < '.'.)
    const batches = readdirSync(path.join(env.outDir, '_batches'));
    expect(new Set(batches)).toEqual(new Set(names.map((n) => `${n}.json`)));
    const { rows } = readStreamingRows(env.outDir, 'public.t');
    expect(rows.map((r) => r.values.get('id')!.toString())).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
  });
});
