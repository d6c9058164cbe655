/**
 * The contenders, each run as its own process and timed from spawn to done: pg-egress (`run`
 * until the rows are in registered files; `reload --wait`), PostgreSQL's pg_recvlogical, psql and
 * pg_dump, and the npm-package stack (bench/baselines/ts-stack.mjs).
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, readdirSync, watch } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { BIN, ROOT, type EgressEnv } from '../../test/helpers/egress.js';
import { formatLsn } from '../../src/lsn.js';
import { Waker } from '../../src/waker.js';

export interface Timed {
  seconds: number;
  /** CPU seconds the whole machine spent meanwhile (all processes: the tool and PostgreSQL). */
  cpuSeconds?: number;
  /** CPU seconds of the contender's own processes and of the server's backends (cpuProbe). */
  cpu?: CpuSplit;
  /** Peak resident set of the measured process (VmHWM), in MB, when it was read. */
  peakRssMb?: number;
}

/** Client tools at least as new as the server: the server's own folder, else the newest system ones. */
export function clientBin(serverBinDir: string, serverMajor: number, tool: string): string {
  const candidates = [serverBinDir];
  if (existsSync('/usr/lib/postgresql')) {
    for (const v of readdirSync('/usr/lib/postgresql').filter((d) => Number(d) >= serverMajor).sort((a, b) => Number(b) - Number(a))) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  for (const dir of candidates) if (dir && existsSync(path.join(dir, tool))) return path.join(dir, tool);
  throw new Error(`${tool} ${serverMajor} or newer not found (looked in ${candidates.filter(Boolean).join(', ')}); install the PostgreSQL client tools of the server's version`);
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait). */
export function machineCpuSeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal ?? 0)) / 100;
}

export interface CpuSplit {
  /** The contender's processes (user + system), children included. */
  ours: number;
  /** The server's backends that ended during the run (walsenders, COPY and dump backends). */
  server: number;
}

/** utime + stime, and cutime + cstime (children it has waited for), of a process in seconds. */
function procCpu(pid: number | 'self'): { own: number; children: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
  // After the command: state(3) … utime(14) stime(15) cutime(16) cstime(17), in clock ticks (100/s).
  return { own: (f[11] + f[12]) / 100, children: (f[13] + f[14]) / 100 };
}

/** The postmaster's pid (its postmaster.pid), whose reaped children are the server's backends. */
export async function postmasterPid(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const dir = (await c.query<{ d: string }>(`SELECT current_setting('data_directory') AS d`)).rows[0].d;
    return Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } finally {
    await c.end();
  }
}

/**
 * CPU seconds of one contender's run, unaffected by other work on the machine: this process's
 * reaped children (the contender's processes: psql, gzip, pg_dump, pg-egress CLI or `run`), a
 * long-running daemon's own time, and the postmaster's reaped children (the backends that served
 * the run: they end with their connections). Call the returned function after the run.
 */
export function cpuProbe(postmaster: number, daemonPid?: number): () => Promise<CpuSplit> {
  const self0 = procCpu('self').children;
  const pm0 = procCpu(postmaster).children;
  const d0 = daemonPid ? procCpu(daemonPid).own : 0;
  return async () => {
    const d1 = daemonPid ? procCpu(daemonPid).own : 0;
    const self1 = procCpu('self').children;
    // Backends exit just after their client closes (a walsender after its last status exchange),
    // and the postmaster reaps them: read until two readings 300 ms apart agree (at most 3 s).
    let server = procCpu(postmaster).children;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const next = procCpu(postmaster).children;
      if (next === server && i > 0) break;
      server = next;
    }
    return { ours: self1 - self0 + d1 - d0, server: server - pm0 };
  };
}

/**
 * Waits until the server's reaped children stop adding CPU (two readings 200 ms apart agree; at
 * most 3 s): a backend that ended just before a measurement (its CPU is counted when the
 * postmaster reaps it) is not charged to the measurement.
 */
export async function serverSettled(postmaster: number): Promise<void> {
  let last = procCpu(postmaster).children;
  for (let i = 0; i < 15; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const now = procCpu(postmaster).children;
    if (now === last) return;
    last = now;
  }
}

/** A process that keeps one core busy (S1-load), until stopped. */
export function cpuHog(): { stop(): Promise<void> } {
  const p = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  const gone = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  return {
    stop: async () => {
      p.kill('SIGKILL');
      await gone;
    },
  };
}

/** Runs a command to completion; rejects with its stderr when it fails. */
export function execTimed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Timed> {
  const t0 = process.hrtime.bigint();
  const c0 = machineCpuSeconds();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code === 0) resolve({ seconds, cpuSeconds: machineCpuSeconds() - c0 });
      else reject(new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(' ')}… exited ${code ?? signal}: ${err.trim().slice(-800)}`));
    });
  });
}

const libpqEnv = (url: string): NodeJS.ProcessEnv => {
  const u = new URL(url);
  return {
    PGHOST: u.hostname,
    PGPORT: u.port,
    PGUSER: decodeURIComponent(u.username),
    PGDATABASE: u.pathname.slice(1),
    PGPASSWORD: decodeURIComponent(u.password),
  };
};

/**
 * pg_recvlogical with pgoutput to a file, until `end`: protocol 1, what the goals were set against
 * (a transaction arrives whole, at its commit: the walsender spills a large one to disk first), or
 * with `streaming` the options pg-egress asks for on PostgreSQL 14+ (protocol 2, streaming on: a
 * large transaction arrives in parts while it is decoded, which pg_recvlogical only writes down,
 * and pg-egress must keep until the commit; src/batch/streamed.ts).
 */
export function recvlogical(
  bin: string,
  url: string,
  slot: string,
  publication: string,
  end: bigint,
  file: string,
  streaming = false,
): Promise<Timed> {
  const proto = streaming ? ['-o', 'proto_version=2', '-o', 'streaming=on'] : ['-o', 'proto_version=1'];
  const args = ['-d', new URL(url).pathname.slice(1), '--slot', slot, '--start', ...proto, '-o', `publication_names=${publication}`, '-o', 'messages=true'];
  return execTimed(bin, [...args, '-E', formatLsn(end), '-f', file], libpqEnv(url));
}

/** The psql pipeline a DBA would type: COPY … (FORMAT csv, HEADER) | gzip -1 > file. */
export function psqlCopy(bin: string, url: string, table: string, file: string): Promise<Timed> {
  const sh = `set -o pipefail; "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "COPY ${table} TO STDOUT (FORMAT csv, HEADER)" | gzip -1 > "$OUT"`;
  return execTimed('bash', ['-c', sh], { ...libpqEnv(url), PSQL: bin, OUT: file });
}

/** pg_dump's directory format with gzip level 1, `jobs` tables at a time. */
export function pgDump(bin: string, url: string, tables: string[], dir: string, jobs = 1): Promise<Timed> {
  return execTimed(bin, ['-Fd', '-Z', '1', '-j', String(jobs), ...tables.flatMap((t) => ['-t', t]), '-f', dir], libpqEnv(url));
}

/** The npm-package stack (baseline b), until `rows` rows are written and acknowledged. */
export function tsStack(url: string, slot: string, publication: string, outDir: string, rows: number): Promise<Timed> {
  return execTimed(process.execPath, [path.join(ROOT, 'bench/baselines/ts-stack.mjs'), url, slot, publication, outDir, String(rows)]);
}

/** Peak RSS (VmHWM) of a live process, in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Rows in files the registry has registered for the slot (streaming flushes). */
async function registeredRows(c: pg.Client, slot: string): Promise<number> {
  const r = await c.query<{ n: string }>(`SELECT coalesce(sum(rows), 0)::text AS n FROM cdc_registry.batches WHERE slot_name = $1 AND kind = 'flush'`, [slot]);
  return Number(r.rows[0].n);
}

export interface Daemon {
  pid: number;
  stop(): Promise<void>;
}

/** `pg-egress run` in the background; rejects `exited` when it stops on its own. */
export function startDaemon(env: EgressEnv): Daemon & { exited: Promise<never> } {
  // BENCH_DAEMON_LOG=file keeps the daemons' logs (debug level), to see where the time of a run went.
  const logFile = process.env.BENCH_DAEMON_LOG;
  // BENCH_DAEMON_PROF=dir writes a V8 CPU profile of each daemon there (node --cpu-prof);
  // BENCH_TRACE_GC=1 adds V8's collections to the log (node --trace-gc; with BENCH_DAEMON_LOG).
  const prof = [...(process.env.BENCH_DAEMON_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DAEMON_PROF}`] : []), ...(process.env.BENCH_TRACE_GC ? ['--trace-gc'] : [])];
  const args = [...prof, BIN, 'run', '--config', env.configPath, ...(logFile ? ['--log-level', 'debug'] : [])];
  const p = spawn(process.execPath, args, { stdio: ['ignore', logFile ? 'pipe' : 'ignore', 'pipe'] });
  if (logFile) p.stdout!.pipe(createWriteStream(logFile, { flags: 'a' }));
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  let stopping = false;
  const exited = new Promise<never>((_, reject) => p.on('exit', (code) => !stopping && reject(new Error(`pg-egress run exited ${code}: ${err.trim()}`))));
  exited.catch(() => undefined);
  const gone = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  return {
    pid: p.pid!,
    exited,
    stop: async () => {
      stopping = true;
      p.kill('SIGTERM');
      await gone;
    },
  };
}

/**
 * S1/S2 for pg-egress: spawn `run` and time until `rows` rows are in registered files, with the
 * daemon's peak RSS at that moment. The registry is read when a batch index appears in
 * output.dir's `_batches/` (inotify, through fs.watch: the index is written just before its batch
 * is registered, so it is read again every 10 ms for 200 ms after), and every 250 ms besides; it
 * was read every 20 ms, whose backend cost the server ~30 ms of CPU a second of the run (56-66 ms
 * in a ~2 s run here, from /proc), which pg_recvlogical is not charged with.
 */
export async function egressStream(env: EgressEnv, rows: number, baseRows = 0): Promise<Timed> {
  const c = new pg.Client({ connectionString: env.url });
  await c.connect();
  // The first run (the initial export) made the folder; without it, the 250 ms reads alone.
  const batches = path.join(env.outDir, '_batches');
  let lastIndexAt = 0;
  const waker = new Waker();
  const watcher = existsSync(batches)
    ? watch(batches, () => {
        lastIndexAt = Date.now();
        waker.wake();
      })
    : null;
  try {
    const t0 = process.hrtime.bigint();
    const c0 = machineCpuSeconds();
    const d = startDaemon(env);
    try {
      for (;;) {
        if ((await Promise.race([registeredRows(c, env.slot), d.exited])) >= baseRows + rows) break;
        await waker.sleep(Date.now() - lastIndexAt < 200 ? 10 : 250);
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      return { seconds, cpuSeconds: machineCpuSeconds() - c0, peakRssMb: peakRssMb(d.pid) };
    } finally {
      await d.stop();
    }
  } finally {
    watcher?.close();
    await c.end();
  }
}

/** R1/R2 for pg-egress: `pg-egress reload <tables> --wait` against the running daemon. */
export function egressReload(env: EgressEnv, tables: string[]): Promise<Timed> {
  return execTimed(process.execPath, [BIN, 'reload', ...tables, '--config', env.configPath, '--wait']);
}
