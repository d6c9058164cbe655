/**
 * Helpers for integration tests: a test database with its own slot and output folder, the daemon
 * in-process or as a child process (for kill -9), and readers that rebuild tables from the files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, waitFor } from '../harness/pg.js';
import { parseConfig, type Config } from '../../src/config/index.js';
import { runDaemon, type RunOptions } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { CsvRecordSplitter, parseRecord } from '../../src/output/csv.js';
import { parseLsn } from '../../src/lsn.js';
import { sessionOptions } from '../../src/db/connect.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The command as users run it: package.json "bin", the bundle `npm run build` writes (scripts/bundle.mjs). */
export const BIN = path.join(ROOT, 'dist/bundle/bin.js');

export interface EgressEnv {
  url: string;
  dbName: string;
  dir: string;
  outDir: string;
  configPath: string;
  slot: string;
  drop(): Promise<void>;
}

export async function createEnv(opts: { config?: string; prefix?: string; adminUrl?: string } = {}): Promise<EgressEnv> {
  const db = await createTestDatabase(opts.prefix ?? 'egress', opts.adminUrl);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-test-'));
  const outDir = path.join(dir, 'out');
  const slot = `s_${db.name.replace(/[^a-z0-9_]/g, '_')}`.slice(0, 60);
  const configPath = path.join(dir, 'cdc.yml');
  const drop = async (): Promise<void> => {
    try {
      await closeDbPool(db.url);
      await db.drop();
    } finally {
      // The output folder, cdc.yml and the daemon's files: nothing of a test stays in /tmp.
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const env: EgressEnv = { url: db.url, dbName: db.name, dir, outDir, configPath, slot, drop };
  writeConfig(env, opts.config ?? '');
  return env;
}

/** Writes cdc.yml: the source, slot, output and a 1-second window; `extra` adds or overrides sections. */
export function writeConfig(env: EgressEnv, extra: string): void {
  const hasSection = (name: string) => new RegExp(`^${name}:`, 'm').test(extra);
  const lines = [`source:\n  url: ${JSON.stringify(env.url)}`, `slot: ${env.slot}`, `publication: ${env.slot}`];
  if (!hasSection('output')) lines.push(`output:\n  dir: ${JSON.stringify(env.outDir)}`);
  if (!hasSection('batch')) lines.push('batch:\n  interval: 1s');
  if (!hasSection('tables')) lines.push('tables:\n  include: ["*.*"]');
  // Test files run side by side: the HTTP endpoints are off unless a test asks for a port.
  if (!hasSection('http')) lines.push('http:\n  port: 0');
  lines.push(extra);
  writeFileSync(env.configPath, lines.join('\n') + '\n');
}

export function loadEnvConfig(env: EgressEnv): Config {
  return parseConfig(readFileSync(env.configPath, 'utf8'), { baseDir: env.dir, path: env.configPath, env: process.env });
}

/**
 * withDb's sessions, a few per database. A test polls the registry every 10–500 ms; a new
 * session each time cost the server a backend start (~3.5 ms CPU measured here, plus ~1 ms in the
 * test) thousands of times a run. Idle sessions close after a second, so none outlives its test by
 * much, and a session that failed or was left inside a transaction is never handed out again.
 */
const pools = new Map<string, pg.Pool>();

function poolFor(url: string): pg.Pool {
  let pool = pools.get(url);
  if (!pool) {
    pool = new pg.Pool({ connectionString: url, options: sessionOptions(), max: 4, idleTimeoutMillis: 1000, allowExitOnIdle: true });
    // An idle session ended by the server (a restart, a failover, DROP DATABASE ... FORCE) is
    // dropped from the pool; the next withDb gets a new one.
    pool.on('error', () => undefined);
    pools.set(url, pool);
  }
  return pool;
}

/** Closes withDb's sessions on a database (before it is dropped). */
export async function closeDbPool(url: string): Promise<void> {
  const pool = pools.get(url);
  pools.delete(url);
  await pool?.end();
}

export async function withDb<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await poolFor(url).connect();
  // A session the server ends while it is checked out (a failover kills the primary) emits 'error'
  // besides failing its query; the query's error is the one the test sees.
  const ignore = (): void => undefined;
  c.on('error', ignore);
  let reusable = false;
  try {
    const result = await fn(c as unknown as pg.Client);
    reusable = c.getTransactionStatus() === 'I';
    return result;
  } finally {
    c.removeListener('error', ignore);
    c.release(!reusable);
  }
}

/** Runs the daemon in this process until `stop()`. */
export function startInProcess(env: EgressEnv, opts: Omit<RunOptions, 'signal'> = {}): { stop(): Promise<void>; done: Promise<void> } {
  const cfg = loadEnvConfig(env);
  const ac = new AbortController();
  const log = createLogger(process.env.EGRESS_TEST_LOG ?? 'warn');
  const done = runDaemon(cfg, log, { ...opts, signal: ac.signal });
  // A daemon that fails on its own (not stopped) fails the file's later waits at once with its
  // error, as a spawned `run` that exits does: the CLI would have printed it, nothing here does.
  done.catch((e: unknown) => {
    if (!ac.signal.aborted) childFailure = `pg-egress run exited (in this process) with: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  });
  return {
    done,
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

export interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Set when a spawned `run` exits on its own with an error, so waits fail at once with its message. */
let childFailure: string | null = null;

/** Forgets a failed `run` of an earlier test file (one worker runs several files: vitest.config). */
export function resetChildFailure(): void {
  childFailure = null;
}

/** `mayFail`: a `run` expected to exit non-zero (it then does not fail the file's later waits). */
export function spawnCli(args: string[], opts: { env?: NodeJS.ProcessEnv; mayFail?: boolean } = {}): Child {
  const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      if (args[0] === 'run' && !opts.mayFail && code !== 0 && code !== null) childFailure = `pg-egress run exited with ${code}: ${err.trim()}`;
      resolve({ code, signal });
    }),
  );
  return { proc, stdout: () => out, stderr: () => err, exit };
}

/**
 * Runs a command to its end. With `timeoutMs`, a command still running then is killed and the call
 * fails naming it with what it printed (a hang reported as itself, not as the test's time-out).
 */
export async function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; mayFail?: boolean; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = spawnCli(args, opts);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    if (opts.timeoutMs === undefined) return;
    timer = setTimeout(() => {
      c.proc.kill('SIGKILL');
      reject(new Error(`pg-egress ${args[0]} still running after ${opts.timeoutMs} ms: ${c.stdout().slice(-2000)}${c.stderr().slice(-2000)}`));
    }, opts.timeoutMs);
  });
  try {
    const { code } = await Promise.race([c.exit, timedOut]);
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

export async function currentWalLsn(url: string): Promise<bigint> {
  return withDb(url, async (c) => parseLsn((await c.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l));
}

/** Waits until the slot is confirmed at or past `lsn` (default: the server's current WAL end). */
export async function waitCaughtUp(env: EgressEnv, lsn?: bigint, timeoutMs = 90_000): Promise<void> {
  const target = lsn ?? (await currentWalLsn(env.url));
  try {
    await waitFor(
      `slot ${env.slot} confirmed past ${target.toString(16)}`,
      async () => {
        if (childFailure) throw new Error(childFailure);
        return withDb(env.url, async (c) => {
          const r = await c.query<{ l: string | null }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [env.slot]);
          return r.rows[0]?.l != null && parseLsn(r.rows[0].l) >= target;
        });
      },
      { timeoutMs, intervalMs: 200 },
    );
  } catch (e) {
    if (String(e).includes('pg-egress run exited')) throw e;
    // A daemon that stopped moving: what its sessions were doing says where (a lock wait, a query).
    throw new Error(`${(e as Error).message}; the database's sessions then: ${await sessionsOf(env.url).catch((x: unknown) => String(x))}`, { cause: e });
  }
}

/** The database's other sessions, one line each: application, state, wait, blockers, query. */
async function sessionsOf(url: string): Promise<string> {
  return withDb(url, async (c) => {
    const { rows } = await c.query<{ s: string }>(
      `SELECT format('[%s %s %s:%s blocked by %s: %s]', application_name, state, wait_event_type, wait_event, pg_blocking_pids(pid), left(query, 200)) AS s
       FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
    );
    return rows.map((r) => r.s).join(' ') || 'none';
  });
}

/** Batches registered for the slot so far. */
export async function batchCount(env: EgressEnv): Promise<number> {
  return withDb(env.url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM cdc_registry.batches WHERE slot_name = $1`, [env.slot])).rows[0].n));
}

/**
 * Waits until `n` more batches are registered than when called: the daemon has streamed and
 * registered under the load meanwhile (instead of sleeping for "long enough").
 */
export async function waitBatches(env: EgressEnv, n = 1, timeoutMs = 90_000): Promise<void> {
  const from = await batchCount(env);
  await waitFor(
    `${n} more batches registered for slot ${env.slot}`,
    async () => {
      if (childFailure) throw new Error(childFailure);
      return (await batchCount(env)) >= from + n;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

export async function copyOut(url: string, sql: string): Promise<Buffer> {
  return withDb(url, async (c) => {
    const chunks: Buffer[] = [];
    const s = c.query(copyTo(sql));
    for await (const chunk of s) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  });
}

export interface StreamRow {
  lsn: string;
  seq: number;
  xid: string;
  commitTs: string;
  op: string;
  unchanged: string | null;
  /** Data fields by column name (null = NULL / not sent). */
  values: Map<string, Buffer | null>;
  /** Exact bytes of the record after the six metadata fields. */
  dataBytes: Buffer;
  batch: string;
}

export function listStreamingFiles(outDir: string, folder: string): string[] {
  const base = path.join(outDir, folder);
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .sort()
    .map((w) => path.join(base, w, 'streaming.csv.gz'))
    .filter((f) => existsSync(f));
}

/** Reads every streaming row of a table folder, in batch order (= commit order). */
export function readStreamingRows(outDir: string, folder: string): { header: string[][]; rows: StreamRow[] } {
  const rows: StreamRow[] = [];
  const headers: string[][] = [];
  for (const file of listStreamingFiles(outDir, folder)) {
    const raw = zlib.gunzipSync(readFileSync(file));
    const batch = path.basename(path.dirname(file));
    let header: string[] | null = null;
    const splitter = new CsvRecordSplitter((rec) => {
      const f = parseRecord(rec);
      if (!header) {
        header = f.map((x) => x!.toString('utf8'));
        headers.push(header);
        return;
      }
      let commas = 0;
      let i = 0;
      // Metadata fields never contain commas except _unchanged, which is quoted when it does.
      let inQ = false;
      for (; i < rec.length && commas < 6; i++) {
        if (rec[i] === 0x22) inQ = !inQ;
        else if (rec[i] === 0x2c && !inQ) commas++;
      }
      const values = new Map<string, Buffer | null>();
      header.slice(6).forEach((name, k) => values.set(name, f[6 + k] ?? null));
      rows.push({
        lsn: f[0]!.toString(),
        seq: Number(f[1]!.toString()),
        xid: f[2]!.toString(),
        commitTs: f[3]!.toString(),
        op: f[4]!.toString(),
        unchanged: f[5] === null ? null : f[5].toString(),
        values,
        dataBytes: rec.subarray(i),
        batch,
      });
    });
    splitter.push(raw);
    splitter.end();
  }
  return { header: headers, rows };
}

/**
 * Rebuilds a table from its streaming rows (SPEC §6): key → row, applying I/U/D/T in order.
 * Returns rows as CSV data-field strings sorted by key, comparable with COPY output.
 */
export function rebuild(
  rows: StreamRow[],
  key: string[],
  columns: string[],
  initial?: Map<string, (string | null)[]>,
): Map<string, (string | null)[]> {
  const table = new Map<string, (string | null)[]>(initial ?? []);
  const k = (r: StreamRow) => JSON.stringify(key.map((c) => r.values.get(c)?.toString() ?? null));
  for (const r of rows) {
    switch (r.op) {
      case 'I':
      case 'U': {
        const prev = table.get(k(r));
        const unchanged = new Set(r.unchanged ? r.unchanged.slice(1, -1).split(',') : []);
        table.set(
          k(r),
          columns.map((c, i) => (unchanged.has(c) ? (prev ? prev[i] : null) : (r.values.get(c)?.toString() ?? null))),
        );
        break;
      }
      case 'D':
        table.delete(k(r));
        break;
      case 'T':
        table.clear();
        break;
      case 'B':
        break;
      default:
        throw new Error(`unknown op ${r.op}`);
    }
  }
  return table;
}

/** The source table as key → CSV fields, through COPY (exact text). */
export async function sourceRows(
  url: string,
  qualified: string,
  key: string[],
  columns: string[],
): Promise<Map<string, (string | null)[]>> {
  const cols = columns.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ');
  const raw = await copyOut(url, `COPY (SELECT ${cols} FROM ${qualified}) TO STDOUT (FORMAT csv)`);
  const out = new Map<string, (string | null)[]>();
  const splitter = new CsvRecordSplitter((rec) => {
    const f = parseRecord(rec).map((x) => (x === null ? null : x.toString()));
    out.set(JSON.stringify(key.map((c) => f[columns.indexOf(c)])), f);
  });
  splitter.push(raw);
  splitter.end();
  return out;
}

export function sortedEntries(m: Map<string, (string | null)[]>): [string, (string | null)[]][] {
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A writer on a connection of its own: `step(c, n)` runs until `stop()`, which waits for the step
 * in progress and resolves to `n`, the sum of what the steps returned (the rows or transactions
 * they wrote). A step's failure fails `stop()`.
 */
export function loopWriter(url: string, step: (c: pg.Client, n: number) => Promise<number>): { stop(): Promise<number> } {
  let stopping = false;
  let n = 0;
  const run = (async () => {
    const c = new pg.Client({ connectionString: url });
    // A server stopped under the writer: the step's query fails, not the process.
    c.on('error', () => undefined);
    await c.connect();
    try {
      while (!stopping) n += await step(c, n);
    } finally {
      await c.end();
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
      return n;
    },
  };
}

/**
 * Waits until a walsender streams from the slot. `active` alone is not enough: while
 * pg_create_logical_replication_slot waits for its consistent point (long on a busy server), the
 * slot is already active under the creating backend, and a row committed then lies before the
 * slot's start and is never decoded.
 */
export async function waitSlotActive(env: EgressEnv, timeoutMs = 90_000): Promise<void> {
  await waitFor(
    `a walsender streaming from slot ${env.slot}`,
    () =>
      withDb(env.url, async (c) => {
        if (childFailure) throw new Error(childFailure);
        const r = await c.query(`SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication w ON w.pid = s.active_pid WHERE s.slot_name = $1`, [env.slot]);
        return r.rowCount === 1;
      }),
    { timeoutMs, intervalMs: 100 },
  );
}

export interface ReloadSet {
  batch: string;
  /** Snapshot LSN S (16 hex digits, as `_lsn`). */
  lsn: string;
  files: string[];
  rows: number;
}

/** Every reload set of a table folder, from its manifests, oldest snapshot first. */
export function reloadSets(outDir: string, folder: string): ReloadSet[] {
  const base = path.join(outDir, folder);
  if (!existsSync(base)) return [];
  const sets: ReloadSet[] = [];
  for (const w of readdirSync(base).sort()) {
    const mf = path.join(base, w, 'manifest.json');
    if (!existsSync(mf)) continue;
    const m = JSON.parse(readFileSync(mf, 'utf8')) as { files: { name: string; type: string; rows: number; lsn: { start: string } }[] };
    const parts = m.files.filter((f) => f.type === 'full_reload');
    if (!parts.length) continue;
    sets.push({
      batch: w,
      lsn: parts[0].lsn.start,
      files: parts.map((f) => path.join(base, w, f.name)).sort(),
      rows: parts.reduce((n, f) => n + f.rows, 0),
    });
  }
  return sets.sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
}

/** Rows of reload files (parts in order, each header dropped) as column → value maps. */
export function readReloadRows(files: string[]): { header: string[]; rows: Map<string, Buffer | null>[] } {
  let header: string[] = [];
  const rows: Map<string, Buffer | null>[] = [];
  for (const file of files) {
    let first = true;
    const splitter = new CsvRecordSplitter((rec) => {
      const f = parseRecord(rec);
      if (first) {
        first = false;
        header = f.map((x) => x!.toString('utf8'));
        return;
      }
      rows.push(new Map(header.map((h, i) => [h, f[i] ?? null])));
    });
    splitter.push(zlib.gunzipSync(readFileSync(file)));
    splitter.end();
  }
  return { header, rows };
}

/**
 * The rebuild rule (SPEC §6): load the newest reload set, then apply the table's streaming rows
 * whose `_lsn` is at or above its snapshot LSN S, in (`_lsn`, `_seq`) order. Without a reload
 * set, every streaming row from an empty table.
 */
export function rebuildFromOutput(
  outDir: string,
  folder: string,
  key: string[],
  columns: string[],
): { table: Map<string, (string | null)[]>; reload: ReloadSet | null; applied: number } {
  const sets = reloadSets(outDir, folder);
  const reload = sets.length ? sets[sets.length - 1] : null;
  const initial = new Map<string, (string | null)[]>();
  if (reload) {
    for (const r of readReloadRows(reload.files).rows) {
      initial.set(JSON.stringify(key.map((c) => r.get(c)?.toString() ?? null)), columns.map((c) => r.get(c)?.toString() ?? null));
    }
  }
  const stream = readStreamingRows(outDir, folder)
    .rows.filter((r) => !reload || r.lsn >= reload.lsn)
    .sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : a.seq - b.seq));
  return { table: rebuild(stream, key, columns, initial), reload, applied: stream.length };
}
