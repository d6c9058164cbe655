/**
 * Memory is bounded: one transaction of 1M rows streams through with the daemon's peak RSS
 * (VmHWM of the child process) under 256 MB. At full size only (PG_EGRESS_TEST_FULL=1, as CI runs
 * it): a smaller transaction would fit in 256 MB even if it were held whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { FULL } from '../helpers/scale.js';
import { createEnv, listStreamingFiles, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

function peakRssKb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

describe.runIf(FULL)('memory', () => {
  let env: EgressEnv;

  beforeAll(async () => {
    env = await createEnv();
    // A window long enough that the whole transaction lands in one file.
    writeConfig(env, 'batch:\n  interval: 1s\n  max_rows: 5000000');
    await withDb(env.url, (c) => c.query('CREATE TABLE big (id bigint PRIMARY KEY, a text, b numeric, c timestamptz)'));
  });

  afterAll(async () => {
    await env?.drop();
  });

  it('streams a 1M-row transaction with peak RSS under 256 MB', async () => {
    const child = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await withDb(env.url, (c) =>
      c.query(`INSERT INTO big SELECT g, md5(g::text) || repeat('y', 40), g / 7.0, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, 1000000) g`),
    );
    await waitCaughtUp(env, undefined, 300_000);
    const peakKb = peakRssKb(child.proc.pid!);
    child.proc.kill('SIGTERM');
    expect((await child.exit).code).toBe(0);
    console.log(`peak RSS of the daemon for a 1M-row transaction: ${(peakKb / 1024).toFixed(1)} MB`);
    expect(peakKb).toBeLessThan(256 * 1024);
    const files = listStreamingFiles(env.outDir, 'public.big');
    expect(files).toHaveLength(1);
    // Count records without holding the whole file: gunzip streaming count of LF outside quotes is
    // simple here because no value contains a newline.
    const raw = zlib.gunzipSync(readFileSync(files[0]));
    let lines = 0;
    for (let i = raw.indexOf(10); i >= 0; i = raw.indexOf(10, i + 1)) lines++;
    expect(lines).toBe(1_000_001);
  }, 600_000);
});
