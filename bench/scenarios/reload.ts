/**
 * R1, R2, R3 and the export half of G: tables filled and frozen once, pg-egress running (its
 * initial export done), then each repetition runs every contender on the same tables in rotating
 * order.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { rotation } from '../lib/stats.js';
import { cpuProbe, egressReload, peakRssMb, postmasterPid, serverSettled, type CpuSplit, type Timed } from '../lib/tools.js';
import { closeDbPool, type EgressEnv } from '../../test/helpers/egress.js';
import { filledTable } from './data.js';
import { egressDatabase, type BenchContext } from './setup.js';

export interface ReloadRuns {
  seconds: Record<string, number[]>;
  /** CPU seconds per contender and repetition (its processes, the server's backends). */
  cpu: Record<string, CpuSplit[]>;
  /** The daemon's peak RSS (MB) after all its exports, the initial one included. */
  peakRssMb: number;
}

/** A baseline: runs once into a fresh folder of its own and is timed. */
export type Baseline = (url: string, dir: string) => Promise<Timed>;

export async function reloadScenario(
  ctx: BenchContext,
  opts: {
    label: string;
    tables: { name: string; rows: number }[];
    /** Makes the tables instead of filledTable (R3's partitioned table). */
    create?: (url: string) => Promise<void>;
    /** Each entry is one `pg-egress reload` contender (one table list each); default: all tables in one. */
    egressTables?: string[][] | ((env: EgressEnv) => Promise<string[][]>);
    baselines: Record<string, Baseline>;
    reps?: number;
  },
): Promise<ReloadRuns> {
  const db = await egressDatabase(async (url) => {
    if (opts.create) await opts.create(url);
    else for (const t of opts.tables) await filledTable(url, t.name, t.rows);
  }, true);
  const { env } = db;
  const egress = typeof opts.egressTables === 'function' ? await opts.egressTables(env) : (opts.egressTables ?? [opts.tables.map((t) => t.name)]);
  const contenders = [...egress.map((_, i) => (egress.length > 1 ? `pg-egress ${opts.tables[i].name}` : 'pg-egress')), ...Object.keys(opts.baselines)];
  const seconds: Record<string, number[]> = Object.fromEntries(contenders.map((c) => [c, [] as number[]]));
  const cpu: Record<string, CpuSplit[]> = Object.fromEntries(contenders.map((c) => [c, [] as CpuSplit[]]));
  const pm = await postmasterPid(env.url);
  // The filling sessions end now, not an idle second later inside a measured run (their CPU is
  // counted when the postmaster reaps them).
  await closeDbPool(env.url);
  try {
    for (let rep = 0; rep < (opts.reps ?? ctx.reps); rep++) {
      for (const who of rotation(contenders, rep)) {
        const dir = path.join(ctx.tmp, `${opts.label}-${rep}-${who.replace(/[^a-z0-9]+/gi, '_')}`);
        mkdirSync(path.dirname(dir), { recursive: true });
        const ours = contenders.indexOf(who) < egress.length;
        // The daemon does pg-egress's work; `reload --wait` only asks and waits.
        await serverSettled(pm);
        const probe = cpuProbe(pm, db.daemon!.pid);
        const t = ours ? await egressReload(env, egress[contenders.indexOf(who)]) : await opts.baselines[who](env.url, dir);
        t.cpu = await probe();
        seconds[who].push(t.seconds);
        cpu[who].push(t.cpu);
        rmSync(dir, { recursive: true, force: true });
        process.stdout.write(`  ${opts.label} rep ${rep + 1}: ${who.padEnd(20)} ${t.seconds.toFixed(2)} s, CPU ${t.cpu.ours.toFixed(1)} s + server ${t.cpu.server.toFixed(1)} s (machine ${t.cpuSeconds?.toFixed(1) ?? '?'} s)\n`);
      }
    }
    return { seconds, cpu, peakRssMb: peakRssMb(db.daemon!.pid) };
  } finally {
    await db.drop();
  }
}
