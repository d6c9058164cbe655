/**
 * R4: the initial export of many small tables (the first `run` of a slot) against pg_dump of the
 * same database. The tables are made and frozen once in a source database; each pg-egress
 * repetition gets a fresh copy of it (CREATE DATABASE … TEMPLATE, not timed) with `init` done
 * (not timed), then is timed from `run`'s start until every export is registered.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import pg from 'pg';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { inject } from 'vitest';
import { rotation } from '../lib/stats.js';
import { cpuProbe, machineCpuSeconds, peakRssMb, postmasterPid, serverSettled, startDaemon, type CpuSplit, type Timed } from '../lib/tools.js';
import { createTestDatabase } from '../../test/harness/pg.js';
import { runCli, writeConfig, type EgressEnv } from '../../test/helpers/egress.js';
import { exportsSettled, type BenchContext } from './setup.js';
import type { Baseline } from './reload.js';

export interface InitialExportRuns {
  seconds: Record<string, number[]>;
  cpu: Record<string, CpuSplit[]>;
  peakRssMb: number[];
}

/** A copy of `template` with pg-egress's config and `init` done. */
async function copyEnv(template: string): Promise<EgressEnv> {
  const admin = inject('pgAdminUrl');
  const db = await createTestDatabase('bench_r4', admin);
  // createTestDatabase made an empty database: replace it with a copy of the template, on a
  // session of its own that ends here. The copy costs the server ~2 s of CPU, counted when the
  // postmaster reaps its backend: a pooled session (withDb) ended only after an idle second, in
  // the middle of the measured run, and charged pg-egress with it (the server's CPU of R4 read
  // 4.0-5.6 s in the 16:42 run against 2.3-2.5 s by hand).
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`DROP DATABASE "${db.name}"`);
    await c.query(`CREATE DATABASE "${db.name}" TEMPLATE "${template}"`);
  } finally {
    await c.end();
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-bench-r4-'));
  const env: EgressEnv = { url: db.url, dbName: db.name, dir, outDir: path.join(dir, 'out'), configPath: path.join(dir, 'cdc.yml'), slot: `s_${db.name}`.slice(0, 60), drop: db.drop };
  writeConfig(env, process.env.BENCH_EGRESS_CONFIG ?? '');
  const init = await runCli(['init', '--config', env.configPath]);
  expect(init.code, init.stderr).toBe(0);
  return env;
}

export async function initialExportScenario(
  ctx: BenchContext,
  opts: { label: string; create: (url: string) => Promise<void>; baselines: Record<string, Baseline> },
): Promise<InitialExportRuns> {
  const admin = inject('pgAdminUrl');
  const src = await createTestDatabase('bench_src', admin);
  await opts.create(src.url);
  const contenders = ['pg-egress', ...Object.keys(opts.baselines)];
  const out: InitialExportRuns = {
    seconds: Object.fromEntries(contenders.map((c) => [c, []])),
    cpu: Object.fromEntries(contenders.map((c) => [c, []])),
    peakRssMb: [],
  };
  const pm = await postmasterPid(src.url);
  try {
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const who of rotation(contenders, rep)) {
        let t: Timed;
        if (who === 'pg-egress') {
          const env = await copyEnv(src.name);
          try {
            // The copy's and `init`'s sessions reaped before the measurement starts.
            await serverSettled(pm);
            const probe = cpuProbe(pm);
            const t0 = process.hrtime.bigint();
            const c0 = machineCpuSeconds();
            const d = startDaemon(env);
            try {
              await Promise.race([exportsSettled(env), d.exited]);
              t = { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuSeconds: machineCpuSeconds() - c0 };
              out.peakRssMb.push(peakRssMb(d.pid));
            } finally {
              await d.stop();
            }
            t.cpu = await probe();
          } finally {
            await env.drop();
            rmSync(env.dir, { recursive: true, force: true });
          }
        } else {
          const dir = path.join(ctx.tmp, `${opts.label}-${rep}-${who.replace(/[^a-z0-9]+/gi, '_')}`);
          mkdirSync(path.dirname(dir), { recursive: true });
          const probe = cpuProbe(pm);
          t = await opts.baselines[who](src.url, dir);
          t.cpu = await probe();
          rmSync(dir, { recursive: true, force: true });
        }
        out.seconds[who].push(t.seconds);
        out.cpu[who].push(t.cpu);
        process.stdout.write(`  ${opts.label} rep ${rep + 1}: ${who.padEnd(20)} ${t.seconds.toFixed(2)} s, CPU ${t.cpu.ours.toFixed(1)} s + server ${t.cpu.server.toFixed(1)} s (machine ${t.cpuSeconds?.toFixed(1) ?? '?'} s)\n`);
      }
    }
    return out;
  } finally {
    await src.drop();
  }
}
