/**
 * A throwaway PostgreSQL cluster from the server binaries that findBinDir() picks. initdb/postgres
 * refuse to run as root, so when we are root they run as the `postgres` OS user (else `nobody`) in
 * a directory it owns.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findPgBin } from '../../scripts/pg-bin.mjs';

/**
 * The server binaries: PG_BIN, else (PG_EMBEDDED=1) the embedded PostgreSQL 18, else the system's,
 * else the embedded ones. One rule for the tests and the demo: scripts/pg-bin.mjs.
 */
export function findBinDir(): string {
  return findPgBin();
}

const isRoot = () => process.getuid?.() === 0;

/**
 * The OS user the server runs as when we are root: `postgres` (PG_OS_USER overrides), or `nobody`
 * on a machine where no PostgreSQL package ever created `postgres`.
 */
let osUser: { name: string; uid: number; gid: number } | null = null;
function pgOsUser(): { name: string; uid: number; gid: number } {
  if (osUser) return osUser;
  const ids = (name: string) => ({
    name,
    uid: Number(execFileSync('id', ['-u', name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()),
    gid: Number(execFileSync('id', ['-g', name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()),
  });
  const wanted = process.env.PG_OS_USER;
  if (wanted) return (osUser = ids(wanted));
  try {
    return (osUser = ids('postgres'));
  } catch {
    return (osUser = ids('nobody'));
  }
}

/** Gives a file or folder to the server's OS user (when we are root). */
export const giveToPg = (p: string) => {
  if (!isRoot()) return;
  const u = pgOsUser();
  chownSync(p, u.uid, u.gid);
};

export function runPg(binDir: string, cmd: string, args: string[]): string {
  const bin = path.join(binDir, cmd);
  const out = isRoot()
    ? execFileSync('runuser', ['-u', pgOsUser().name, '--', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : execFileSync(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return out.toString();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Cluster {
  binDir: string;
  dataDir: string;
  baseDir: string;
  port: number;
  url(db?: string): string;
  start(): void;
  stop(mode?: 'fast' | 'immediate'): void;
  restart(mode?: 'fast' | 'immediate'): void;
  destroy(): void;
}

/** initdb + settings in postgresql.auto.conf (so a restart keeps port and settings). */
export async function createCluster(settings: Record<string, string | number>, opts: { binDir?: string } = {}): Promise<Cluster> {
  const binDir = opts.binDir ?? findBinDir();
  const baseDir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-cluster-'));
  const dataDir = path.join(baseDir, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  giveToPg(baseDir);
  giveToPg(dataDir);
  const initdb = (locale: string) => runPg(binDir, 'initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', `--locale=${locale}`, '--no-sync']);
  try {
    initdb('C.UTF-8');
  } catch {
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { mode: 0o700 });
    giveToPg(dataDir);
    initdb('C');
  }
  const port = await freePort();
  const conf: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: `'${baseDir}'`,
    ...settings,
  };
  writeFileSync(path.join(dataDir, 'postgresql.auto.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  giveToPg(path.join(dataDir, 'postgresql.auto.conf'));
  return clusterAt(binDir, baseDir, dataDir, port);
}

/** A Cluster for a data directory that exists (a standby made from a copy, a server moved to another port). */
export function clusterAt(binDir: string, baseDir: string, dataDir: string, port: number): Cluster {
  const log = path.join(baseDir, 'server.log');
  if (isRoot()) {
    writeFileSync(log, '');
    giveToPg(log);
  }
  const tail = () => {
    try {
      return readFileSync(log, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };
  const ctl = (args: string[]) => {
    try {
      runPg(binDir, 'pg_ctl', ['-D', dataDir, '-l', log, '-w', '-t', '120', ...args]);
    } catch (e) {
      throw new Error(`pg_ctl ${args.join(' ')} failed: ${(e as Error).message}\n${tail()}`, { cause: e });
    }
  };
  return {
    binDir,
    dataDir,
    baseDir,
    port,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    start: () => ctl(['start']),
    stop: (mode = 'fast') => ctl(['-m', mode, 'stop']),
    restart: (mode = 'fast') => ctl(['-m', mode, 'restart']),
    destroy: () => rmSync(baseDir, { recursive: true, force: true }),
  };
}

