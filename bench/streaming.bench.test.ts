/**
 * Streaming throughput, side by side in one run: PostgreSQL's own pg_recvlogical (pgoutput, to
 * /dev/null: the server's decoding ceiling) against pg-egress (decode, CSV, gzip, fsync, register)
 * on the same committed transactions, each from its own slot. Prints seconds, rows/s and the ratio.
 * BENCH_ROWS sets the size (default 1,000,000 rows in one transaction plus 20,000 small ones).
 * Durations are printed, never asserted.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { createEnv, currentWalLsn, runCli, spawnCli, waitCaughtUp, withDb, type EgressEnv } from '../test/helpers/egress.js';
import { formatLsn } from '../src/lsn.js';

const run = promisify(execFile);
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const SMALL = Math.max(1, Math.floor(ROWS / 50));

describe('streaming throughput', () => {
  let env: EgressEnv;
  afterAll(async () => {
    await env?.drop();
  });

  it(`pg-egress vs pg_recvlogical on ${ROWS} + ${SMALL} rows`, async () => {
    env = await createEnv();
    await withDb(env.url, (c) => c.query('CREATE TABLE bench (id bigint PRIMARY KEY, a text, b numeric, c timestamptz, d jsonb)'));
    // Every slot exists before the data, so all see exactly the same transactions. pg_recvlogical
    // runs once before pg-egress and once after (a slot each): the first reader pays for a cold
    // page cache, so the ratio is taken against pg_recvlogical's faster run.
    expect((await runCli(['init', '--config', env.configPath])).code).toBe(0);
    const recvSlots = ['bench_recvlogical_before', 'bench_recvlogical_after'];
    for (const s of recvSlots) await withDb(env.url, (c) => c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [s]));
    await withDb(env.url, async (c) => {
      await c.query(
        `INSERT INTO bench SELECT g, md5(g::text), g / 7.0, '2026-01-01'::timestamptz + g * interval '1 second', jsonb_build_object('k', g)
         FROM generate_series(1, $1::int) g`,
        [ROWS],
      );
      // Many small transactions too: per-transaction overhead matters as much as per-row.
      await c.query(`DO $$ BEGIN FOR i IN 1..${SMALL} LOOP INSERT INTO bench VALUES (${ROWS} + i, 'x', i, now(), '{}'); COMMIT; END LOOP; END $$`);
    });
    const end = await currentWalLsn(env.url);

    // The embedded PostgreSQL 18 ships no client tools: then the system's pg_recvlogical.
    const serverBin = inject('pgBinDir');
    const pgBin = serverBin && existsSync(path.join(serverBin, 'pg_recvlogical')) ? serverBin : path.dirname((await run('which', ['pg_recvlogical'])).stdout.trim());
    const u = new URL(env.url);
    const recvlogical = async (slot: string): Promise<number> => {
      const t = process.hrtime.bigint();
      await run(path.join(pgBin, 'pg_recvlogical'), [
        '-h', u.hostname, '-p', u.port, '-U', u.username, '-d', env.dbName, '--slot', slot, '--start',
        '-o', 'proto_version=1', '-o', `publication_names=${env.slot}`, '-E', formatLsn(end), '-f', '/dev/null',
      ]);
      return Number(process.hrtime.bigint() - t) / 1e9;
    };
    const before = await recvlogical(recvSlots[0]);

    const t = process.hrtime.bigint();
    const child = spawnCli(['run', '--config', env.configPath]);
    await waitCaughtUp(env, end, 1_700_000);
    const egress = Number(process.hrtime.bigint() - t) / 1e9;
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);

    const after = await recvlogical(recvSlots[1]);
    for (const s of recvSlots) await withDb(env.url, (c) => c.query(`SELECT pg_drop_replication_slot($1)`, [s]));
    const best = Math.min(before, after);

    const total = ROWS + SMALL;
    const line = (name: string, s: number) => `${name.padEnd(16)} ${s.toFixed(2).padStart(8)} s  ${Math.round(total / s).toLocaleString('en-US').padStart(10)} rows/s`;
    console.log(
      [
        `streaming ${total.toLocaleString('en-US')} rows (${ROWS.toLocaleString('en-US')} in one transaction + ${SMALL.toLocaleString('en-US')} single-row transactions)`,
        line('pg_recvlogical', before) + '  (first, cold cache)',
        line('pg-egress', egress),
        line('pg_recvlogical', after) + '  (after pg-egress)',
        `ratio pg-egress / faster pg_recvlogical: ${(egress / best).toFixed(2)}x time (pg-egress also writes gzip CSV, fsyncs and registers)`,
      ].join('\n'),
    );
  });
});
