/**
 * R4: the initial export of many small tables (the first `run` of a slot) against pg_dump of the
 * same database. The tables are made and frozen once in a source database; each pg-egress
 * repetition gets a fresh copy of it (CREATE DATABASE … TEMPLATE, not timed) with `init` done
 * (not timed), then is timed from `run`'s start until every export is registered.
 *
 * No run pays for the harness's own file-system work: before every run (any contender's) the
 * server checkpoints and the file systems are synced, so the copy's ~2 s of writes (hundreds of
 * MB left dirty) are not written back inside the next timed run; and what runs leave behind (their
 * output folders, the database copies) is removed only once the scenario is over, because on a
 * file system without a journal (this machine's ext4) each new inode is found by skipping those
 * deleted in the last 5-10 s (ext4 `recently_deleted()`, fs/ext4/ialloc.c), which made every
 * file a run creates cost ~0.1-0.3 ms of CPU right after the previous run's were deleted.
 */
import { spawnSync } from 'node:child_process';
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
import { exportsWatch, type BenchContext } from './setup.js';
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

/** The server's dirty buffers written and the machine's dirty pages written back, before a timed run. */
async function quiesce(admin: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query('CHECKPOINT');
  } finally {
    await c.end();
  }
  spawnSync('sync');
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
  // Removed once the scenario is over (see the file comment).
  const leftovers: (() => Promise<void> | void)[] = [];
  try {
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const who of rotation(contenders, rep)) {
        let t: Timed;
        if (who === 'pg-egress') {
          const env = await copyEnv(src.name);
          try {
            await quiesce(admin);
            // The copy's and `init`'s sessions reaped before the measurement starts.
            // The watcher's session (LISTENing for the daemon's NOTIFY) is made before the run.
            const watch = await exportsWatch(env);
            await serverSettled(pm);
            const probe = cpuProbe(pm);
            const t0 = process.hrtime.bigint();
            const c0 = machineCpuSeconds();
            const d = startDaemon(env);
            try {
              await Promise.race([watch.settled(), d.exited]);
              t = { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuSeconds: machineCpuSeconds() - c0 };
              out.peakRssMb.push(peakRssMb(d.pid));
            } finally {
              await watch.close();
              await d.stop();
            }
            t.cpu = await probe();
          } finally {
            leftovers.push(() => env.drop(), () => rmSync(env.dir, { recursive: true, force: true }));
          }
        } else {
          const dir = path.join(ctx.tmp, `${opts.label}-${rep}-${who.replace(/[^a-z0-9]+/gi, '_')}`);
          mkdirSync(path.dirname(dir), { recursive: true });
          await quiesce(admin);
          await serverSettled(pm);
          const probe = cpuProbe(pm);
          t = await opts.baselines[who](src.url, dir);
          t.cpu = await probe();
          leftovers.push(() => rmSync(dir, { recursive: true, force: true }));
        }
        out.seconds[who].push(t.seconds);
        out.cpu[who].push(t.cpu);
        process.stdout.write(`  ${opts.label} rep ${rep + 1}: ${who.padEnd(20)} ${t.seconds.toFixed(2)} s, CPU ${t.cpu.ours.toFixed(1)} s + server ${t.cpu.server.toFixed(1)} s (machine ${t.cpuSeconds?.toFixed(1) ?? '?'} s)\n`);
      }
    }
    return out;
  } finally {
    for (const f of leftovers) await f();
    await src.drop();
  }
}
