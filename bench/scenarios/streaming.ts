/**
 * S1, S2 and the streaming half of G: the same committed transactions read by each contender from
 * its own slot, all slots created before the data, in one database per repetition. The order of
 * the contenders rotates each repetition.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { closeDbPool, currentWalLsn } from '../../test/helpers/egress.js';
import { rotation } from '../lib/stats.js';
import { cpuHog, cpuProbe, egressStream, postmasterPid, recvlogical, serverSettled, tsStack, type CpuSplit, type Timed } from '../lib/tools.js';
import { createTables } from './data.js';
import { createSlots, egressDatabase, type BenchContext } from './setup.js';

export type StreamContender = 'pg-egress' | 'pg_recvlogical' | 'pg_recvlogical-streaming' | 'ts-stack';

export interface StreamRuns {
  changes: number;
  /** Seconds per contender, index = repetition. */
  seconds: Record<string, number[]>;
  /** pg-egress's peak RSS (MB) per repetition. */
  peakRssMb: number[];
  /** CPU seconds per contender and repetition (its processes, the server's backends). */
  cpu: Record<string, CpuSplit[]>;
}

export async function streamingScenario(
  ctx: BenchContext,
  opts: {
    label: string;
    load: (url: string, table: string) => Promise<number>;
    contenders: StreamContender[];
    reps?: number;
    hog?: boolean;
  },
): Promise<StreamRuns> {
  const out: StreamRuns = {
    changes: 0,
    seconds: Object.fromEntries(opts.contenders.map((c) => [c, [] as number[]])),
    peakRssMb: [],
    cpu: Object.fromEntries(opts.contenders.map((c) => [c, [] as CpuSplit[]])),
  };
  const table = 'public.bench';
  for (let rep = 0; rep < (opts.reps ?? ctx.reps); rep++) {
    // A first `run` on the empty table does the initial export, so the measured run only streams.
    const db = await egressDatabase((url) => createTables(url, [table]), false);
    const { env } = db;
    try {
      const slots: Record<string, string> = { pg_recvlogical: `${env.slot}_recv`, 'pg_recvlogical-streaming': `${env.slot}_recv2`, 'ts-stack': `${env.slot}_ts` };
      await createSlots(env.url, opts.contenders.filter((c) => c !== 'pg-egress').map((c) => slots[c]));
      const changes = await opts.load(env.url, table);
      out.changes = changes;
      const end = await currentWalLsn(env.url);
      const dir = path.join(ctx.tmp, `${opts.label}-${rep}`);
      mkdirSync(dir, { recursive: true });
      const pm = await postmasterPid(env.url);
      // The loading sessions end now, not an idle second later inside a measured run.
      await closeDbPool(env.url);
      for (const who of rotation(opts.contenders, rep)) {
        let t: Timed;
        // S1-load: one core kept busy by an unrelated process during every contender's run.
        await serverSettled(pm);
        const hog = opts.hog ? cpuHog() : null;
        const probe = cpuProbe(pm);
        try {
          if (who === 'pg-egress') {
            t = await egressStream(env, changes);
            out.peakRssMb.push(t.peakRssMb ?? NaN);
          } else if (who === 'pg_recvlogical' || who === 'pg_recvlogical-streaming') {
            const streamed = who === 'pg_recvlogical-streaming';
            t = await recvlogical(ctx.bin.pg_recvlogical, env.url, slots[who], env.slot, end, path.join(dir, `${who}.out`), streamed);
          } else {
            t = await tsStack(env.url, slots['ts-stack'], env.slot, path.join(dir, 'ts-stack'), changes);
          }
          t.cpu = await probe();
        } finally {
          await hog?.stop();
        }
        out.seconds[who].push(t.seconds);
        out.cpu[who].push(t.cpu);
        process.stdout.write(
          `  ${opts.label} rep ${rep + 1}: ${who.padEnd(24)} ${t.seconds.toFixed(2)} s, CPU ${t.cpu.ours.toFixed(1)} s + server ${t.cpu.server.toFixed(1)} s (machine ${t.cpuSeconds?.toFixed(1) ?? '?'} s)${t.peakRssMb ? `, peak RSS ${t.peakRssMb.toFixed(0)} MB` : ''}\n`,
        );
      }
      rmSync(dir, { recursive: true, force: true });
    } finally {
      await db.drop();
    }
  }
  return out;
}
