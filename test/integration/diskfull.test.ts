/**
 * A full or read-only output.dir (SPEC §6, §10): a write error in the middle of a large transaction
 * ends the daemon within seconds with the one-line exit-8 error (never a silent hang), nothing is
 * registered that is not durable, and a restart once the disk is writable again loses nothing.
 *
 * output.dir lives on a small tmpfs of its own (this needs root, as CI runs it): remount with a
 * larger size frees space, `remount,ro` makes it read-only.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, promises as fsp, readFileSync, rmdirSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  createEnv,
  loadEnvConfig,
  readStreamingRows,
  rebuild,
  sortedEntries,
  sourceRows,
  spawnCli,
  waitCaughtUp,
  waitSlotActive,
  withDb,
  writeConfig,
  type Child,
  type EgressEnv,
} from '../helpers/egress.js';
import { sourceError } from '../../src/db/connect.js';

const TABLE = 't1';
const KEY = ['id'];
const COLUMNS = ['id', 'v', 'n'];
/**
 * ~100 bytes of poorly compressible text per row (hex: about 70 bytes per row gzipped at level 1).
 * BIG_ROWS of them are ~5.5 MB gzipped, well past the 3 MB tmpfs (20k rows, ~1.4 MB, would fit).
 */
const BIG_ROWS = 80_000;
const bigInsert = (rows: number) =>
  `INSERT INTO ${TABLE} (v, n) SELECT md5(g::text) || md5((g * 7)::text) || md5(random()::text), g FROM generate_series(1, ${rows}) g`;
/** Generous: the fixed daemon exits within seconds; the old one hung forever. */
const EXIT_TIMEOUT_MS = 90_000;

const mounts: string[] = [];
const children: Child[] = [];
const envs: EgressEnv[] = [];

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh temporary folder with a tmpfs of `size` on it. Fails (does not skip) without root. */
function mountTmpfs(size: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-diskfull-'));
  try {
    sh('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  } catch (e) {
    rmdirSync(dir);
    const err = e as { stderr?: Buffer; message?: string };
    throw new Error(`cannot mount a ${size} tmpfs on ${dir}: ${(err.stderr?.toString() || err.message || String(e)).trim()}; this test needs root (CI runs as root)`, { cause: e });
  }
  mounts.push(dir);
  return dir;
}

/** Free space on the tmpfs, for failure messages (a transaction that fit would not fail at all). */
function freeSpace(mnt: string): string {
  const st = statfsSync(mnt);
  return `${((st.bavail * st.bsize) / 1024).toFixed(0)} KiB of ${((st.blocks * st.bsize) / 1024).toFixed(0)} KiB free on ${mnt}`;
}

const remount = (dir: string, opts: string) => sh('mount', ['-o', `remount,${opts}`, dir]);

/**
 * Read-only while the daemon runs: the kernel refuses (EBUSY) while a file on the mount is open
 * for writing, and the daemon writes small files now and then (`_status.json`, `_confirmed.json`),
 * so try again until an instant when none is open.
 */
async function remountReadOnly(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      remount(dir, 'ro');
      return;
    } catch (e) {
      if (i >= 400 || !/busy/i.test(String((e as { stderr?: Buffer }).stderr ?? (e as Error).message))) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

function unmount(dir: string): void {
  try {
    sh('umount', [dir]);
  } catch {
    try {
      sh('umount', ['-l', dir]);
    } catch {
      // already unmounted
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    // left behind in the temp folder: harmless
  }
}

function run(env: EgressEnv, mayFail = false): Child {
  const c = spawnCli(['run', '--config', env.configPath], { mayFail });
  children.push(c);
  return c;
}

/** Waits for a child to exit, failing (not hanging) when it does not within `ms`. */
async function exitWithin(
  c: Child,
  ms: number,
  what: string,
  mnt?: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: pg-egress run did not exit within ${ms / 1000} s (hung)${mnt ? `; ${freeSpace(mnt)}` : ''}; stderr so far: ${JSON.stringify(c.stderr())}; last log lines: ${c.stdout().trim().split('\n').slice(-5).join('\n')}`)), ms);
  });
  try {
    const ex = await Promise.race([c.exit, timeout]);
    return { ...ex, ms: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

async function setup(size: string): Promise<{ env: EgressEnv; mnt: string }> {
  const mnt = mountTmpfs(size);
  const env = await createEnv({ prefix: 'diskfull' });
  envs.push(env);
  env.outDir = path.join(mnt, 'out');
  writeConfig(env, '');
  await withDb(env.url, (c) => c.query(`CREATE TABLE ${TABLE} (id bigserial PRIMARY KEY, v text, n int)`));
  return { env, mnt };
}

async function insertSmall(env: EgressEnv, n: number): Promise<void> {
  await withDb(env.url, async (c) => {
    for (let i = 0; i < n; i++) await c.query(`INSERT INTO ${TABLE} (v, n) VALUES ($1, $2)`, [`small ${i}`, i]);
  });
}

/** The one-line exit-8 error that names output.dir and the errno. */
function expectOutputError(stderr: string, errno: RegExp): void {
  const text = stderr.trim();
  expect(text.split('\n'), text).toHaveLength(1);
  expect(text).toMatch(/^pg-egress: /);
  expect(text).toMatch(errno);
  expect(text).toMatch(/output\.dir/);
}

/** Every registered file is on disk, whole (sha256 as registered): nothing registered ahead of the disk. */
async function expectRegisteredDurable(env: EgressEnv): Promise<number> {
  const files = await withDb(env.url, async (c) => (await c.query<{ path: string; sha256: string }>('SELECT path, sha256 FROM cdc_registry.files WHERE slot_name = $1', [env.slot])).rows);
  for (const f of files) {
    const abs = path.join(env.outDir, f.path);
    expect(existsSync(abs), f.path).toBe(true);
    expect(createHash('sha256').update(readFileSync(abs)).digest('hex'), f.path).toBe(f.sha256);
  }
  return files.length;
}

/** Restarts, waits until caught up, stops with SIGTERM and compares the rebuilt table with the source. */
async function expectRecovered(env: EgressEnv): Promise<number> {
  const c = run(env);
  await waitSlotActive(env, 60_000);
  await waitCaughtUp(env, undefined, 120_000);
  c.proc.kill('SIGTERM');
  const ex = await exitWithin(c, EXIT_TIMEOUT_MS, 'SIGTERM after recovery');
  expect(ex.code, c.stderr()).toBe(0);
  const { rows } = readStreamingRows(env.outDir, `public.${TABLE}`);
  const got = rebuild(rows, KEY, COLUMNS);
  const want = await sourceRows(env.url, TABLE, KEY, COLUMNS);
  expect(want.size).toBeGreaterThan(BIG_ROWS);
  expect(sortedEntries(got)).toEqual(sortedEntries(want));
  // Each insert exactly once: as many I rows as source rows (nothing is updated or deleted).
  expect(rows.filter((r) => r.op === 'I')).toHaveLength(want.size);
  return want.size;
}

describe('output.dir full or read-only', () => {
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exit));
    for (const m of mounts) unmount(m);
    for (const e of envs) await e.drop();
  });

  it('ENOSPC in a large transaction: exit 8 within seconds, then a restart with space loses nothing', async () => {
    const { env, mnt } = await setup('3M');
    const child = run(env, true);
    await waitSlotActive(env);
    await insertSmall(env, 5);
    await waitCaughtUp(env);

    const t0 = Date.now();
    await withDb(env.url, (c) => c.query(bigInsert(BIG_ROWS)));
    const ex = await exitWithin(child, EXIT_TIMEOUT_MS, 'ENOSPC', mnt);
    const secs = (Date.now() - t0) / 1000;
    console.log(`ENOSPC: pg-egress exited ${ex.code} ${secs.toFixed(1)} s after the ${BIG_ROWS}-row transaction committed: ${child.stderr().trim()}`);
    expect(ex.code, child.stderr()).toBe(8);
    expectOutputError(child.stderr(), /ENOSPC/);
    const registered = await expectRegisteredDurable(env);
    expect(registered).toBeGreaterThan(0);

    remount(mnt, 'size=64M');
    const rows = await expectRecovered(env);
    console.log(`ENOSPC: ${registered} files registered before the failure were intact; after remount,size=64M the restart rebuilt ${rows} rows equal to the source`);
  }, 300_000);

  it('read-only output.dir: exit 8 while running and at start-up, then a restart on rw loses nothing', async () => {
    const { env, mnt } = await setup('64M');
    const child = run(env, true);
    await waitSlotActive(env);
    await insertSmall(env, 5);
    await waitCaughtUp(env);

    await remountReadOnly(mnt);
    const t0 = Date.now();
    await withDb(env.url, (c) => c.query(bigInsert(BIG_ROWS)));
    const ex = await exitWithin(child, EXIT_TIMEOUT_MS, 'EROFS while running', mnt);
    const secs = (Date.now() - t0) / 1000;
    console.log(`EROFS: pg-egress exited ${ex.code} ${secs.toFixed(1)} s after the ${BIG_ROWS}-row transaction committed: ${child.stderr().trim()}`);
    expect(ex.code, child.stderr()).toBe(8);
    expectOutputError(child.stderr(), /EROFS/);
    const registered = await expectRegisteredDurable(env);
    expect(registered).toBeGreaterThan(0);

    // Start-up on the still read-only output.dir: the same kind of error, not an internal one.
    const again = run(env, true);
    const ex2 = await exitWithin(again, EXIT_TIMEOUT_MS, 'start-up on a read-only output.dir');
    console.log(`EROFS at start-up: exit ${ex2.code} after ${(ex2.ms / 1000).toFixed(1)} s: ${again.stderr().trim()}`);
    expect(ex2.code, again.stderr()).toBe(8);
    expectOutputError(again.stderr(), /EROFS/);

    // However a file error reaches the start-up's error path, it is OUTPUT_IO (exit 8), not a
    // "PostgreSQL error" (exit 1): here a real EROFS from this read-only output.dir.
    const erofs = await fsp.mkdir(path.join(env.outDir, 'probe')).then(() => null, (e: unknown) => e);
    expect((erofs as NodeJS.ErrnoException | null)?.code).toBe('EROFS');
    const mapped = sourceError(erofs, loadEnvConfig(env).source, 'stream');
    expect(mapped.code).toBe('OUTPUT_IO');
    expect(mapped.exitCode).toBe(8);
    expect(mapped.retryable).toBe(false);
    expect(mapped.message).toMatch(/EROFS.*output\.dir/);

    remount(mnt, 'rw');
    const rows = await expectRecovered(env);
    console.log(`EROFS: after remount,rw the restart rebuilt ${rows} rows equal to the source`);
  }, 300_000);

  it('file errors from any step are OUTPUT_IO (exit 8); socket errors stay source errors', async () => {
    const source = { host: 'db', port: 5432, database: 'shop', user: 'egress', password: 'secret', ssl: { mode: 'disable' as const } } as Parameters<typeof sourceError>[1];
    const sysErr = (code: string, syscall: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(`${code}: failed, ${syscall}`), { code, syscall, errno: -1, ...extra });
    // A real ENOENT with a path, and the errnos of a full, read-only, failing or over-quota disk,
    // also without a path (FileHandle.sync reports none).
    const enoent = await fsp.open(path.join(os.tmpdir(), 'pg-egress-no-such-dir', 'x'), 'r').then(() => null, (e: unknown) => e);
    const cases: [unknown, string][] = [
      [enoent, 'ENOENT'],
      [sysErr('ENOSPC', 'write', { path: '/data/out/_tmp/a.csv.gz' }), 'ENOSPC'],
      [sysErr('EROFS', 'rmdir', { path: '/data/out/_tmp' }), 'EROFS'],
      [sysErr('EIO', 'fsync'), 'EIO'],
      [sysErr('EDQUOT', 'write'), 'EDQUOT'],
      [sysErr('EACCES', 'open', { path: '/data/out/_owner.json' }), 'EACCES'],
    ];
    for (const [e, code] of cases) {
      const m = sourceError(e, source, 'stream');
      expect(m.code, m.message).toBe('OUTPUT_IO');
      expect(m.exitCode).toBe(8);
      expect(m.retryable).toBe(false);
      expect(m.message).toContain(`(${code})`);
      expect(m.message).toMatch(/output\.dir/);
      expect(m.message.split('\n')).toHaveLength(1);
    }
    for (const e of [sysErr('ECONNREFUSED', 'connect', { address: '127.0.0.1', port: 5432 }), sysErr('ECONNRESET', 'read')]) {
      expect(sourceError(e, source, 'stream').code).toBe('SOURCE_UNREACHABLE');
    }
    // A missing Unix socket is ENOENT too, but of connect(): not an output.dir problem.
    expect(sourceError(sysErr('ENOENT', 'connect', { address: '/run/postgresql/.s.PGSQL.5432' }), source, 'stream').code).not.toBe('OUTPUT_IO');
  });
});
