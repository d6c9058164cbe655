/**
 * R1, R2 and the export half of G: tables filled and frozen once, pg-egress running (its initial
 * export done), then each repetition runs every contender on the same tables in rotating order.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { rotation } from '../lib/stats.js';
import { egressReload, peakRssMb, type Timed } from '../lib/tools.js';
import { filledTable } from './data.js';
import { egressDatabase, type BenchContext } from './setup.js';

export interface ReloadRuns {
  seconds: Record<string, number[]>;
  /** The daemon's peak RSS (MB) after all its exports, the initial one included. */
  peakRssMb: number;
}

/** A baseline: runs once into a fresh folder of its own and is timed. */
export type Baseline = (url: string, dir: string) => Promise<Timed>;

export async function reloadScenario(
  ctx: BenchContext,
  opts: { label: string; tables: { name: string; rows: number }[]; egressTables?: string[][]; baselines: Record<string, Baseline>; reps?: number },
): Promise<ReloadRuns> {
  const db = await egressDatabase(async (url) => {
    for (const t of opts.tables) await filledTable(url, t.name, t.rows);
  }, true);
  const { env } = db;
  // Each entry of egressTables is one `pg-egress reload` contender (one table list each).
  const egress = opts.egressTables ?? [opts.tables.map((t) => t.name)];
  const contenders = [...egress.map((_, i) => (egress.length > 1 ? `pg-egress ${opts.tables[i].name}` : 'pg-egress')), ...Object.keys(opts.baselines)];
  const seconds: Record<string, number[]> = Object.fromEntries(contenders.map((c) => [c, [] as number[]]));
  try {
    for (let rep = 0; rep < (opts.reps ?? ctx.reps); rep++) {
      for (const who of rotation(contenders, rep)) {
        const dir = path.join(ctx.tmp, `${opts.label}-${rep}-${who.replace(/[^a-z0-9]+/gi, '_')}`);
        mkdirSync(path.dirname(dir), { recursive: true });
        const ours = contenders.indexOf(who) < egress.length;
        const t = ours ? await egressReload(env, egress[contenders.indexOf(who)]) : await opts.baselines[who](env.url, dir);
        seconds[who].push(t.seconds);
        rmSync(dir, { recursive: true, force: true });
        process.stdout.write(`  ${opts.label} rep ${rep + 1}: ${who.padEnd(20)} ${t.seconds.toFixed(2)} s, ${t.cpuSeconds?.toFixed(1) ?? '?'} CPU s\n`);
      }
    }
    return { seconds, peakRssMb: peakRssMb(db.daemon!.pid) };
  } finally {
    await db.drop();
  }
}
