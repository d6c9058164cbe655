/**
 * Durable file publication (SPEC §3): write to a temporary name, fsync, rename, fsync the
 * directory. A reader never sees a half-written file, and after a crash a renamed file is whole.
 */
import { promises as fsp, constants as fsc, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EgressError } from '../errors.js';

export const TMP_SUFFIX = '.tmp';

export async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw ioError(dir, e);
  }
}

/** fsync of a file written and closed without one. */
export async function fsyncFile(file: string): Promise<void> {
  try {
    const fh = await fsp.open(file, fsc.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw ioError(file, e);
  }
}

/** mkdir -p with mode, fsyncing each created directory's parent so the new entry is durable. */
export async function ensureDir(dir: string, mode: number): Promise<void> {
  try {
    await fsp.access(dir);
    return;
  } catch {
    // fall through: create it
  }
  const parent = path.dirname(dir);
  if (parent !== dir) await ensureDir(parent, mode);
  try {
    await fsp.mkdir(dir, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(dir, e);
  }
  await fsyncDir(parent);
}

/**
 * The folders `names` inside the existing `parent`, made where missing, with one fsync of `parent`
 * for all of them (an initial export makes a folder per table: one fsync, not one per table).
 * `sync: false`: no fsync (the caller makes the file system durable at once: commit/sync-policy.ts).
 */
export async function ensureDirsIn(parent: string, names: readonly string[], mode: number, opts: { sync?: boolean } = {}): Promise<void> {
  let made = false;
  // One after another, each a call on this thread: every mkdir in `parent` takes that folder's
  // lock, and side by side on libuv's pool (this code ran 16 at a time) they waited on it: 500
  // folders, 4 at a time on the pool, cost the process ~48 ms of CPU against ~10 ms one after
  // another here (idle AMD EPYC VM, ext4), and the pool's promises took the main thread's turns
  // while an export's COPYs needed them. (One at a time through the pool was worse still: 200
  // folders took 0.8 s behind the COPYs' turns.)
  for (const n of new Set(names)) if (ensureDirInUnsynced(parent, n, mode)) made = true;
  if (made && opts.sync !== false) await fsyncDir(parent);
}

/**
 * The unsynced forms, for a batch that one syncfs makes durable (commit/batch-commit.ts): each a
 * call on the main thread, not open/write/close each a trip through libuv's thread pool and a
 * promise. Placing 300 small tables' folders and files took 110-135 ms through the pool here, with
 * every existing folder's EEXIST an Error object; written this way it is a fraction of that.
 * The caller yields between tables (they are ~0.1 ms each).
 */

/** The folder `name` in `parent` made if missing (no fsync); whether it was made. */
export function ensureDirInUnsynced(parent: string, name: string, mode: number): boolean {
  const dir = path.join(parent, name);
  try {
    // recursive: an existing folder is no error (nor an Error object); `parent` exists.
    return mkdirSync(dir, { mode, recursive: true }) !== undefined;
  } catch (e) {
    throw ioError(dir, e);
  }
}

/** `file` + TMP_SUFFIX written with no fsync and left under that name for the caller to rename. */
export function writeTmpFileUnsynced(file: string, data: Buffer | string, mode: number): void {
  const tmp = file + TMP_SUFFIX;
  try {
    writeFileSync(tmp, data, { mode });
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // A partial temporary file only takes space (the start-up sweep would remove it too).
    }
    throw ioError(file, e);
  }
}

export function renameUnsynced(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    throw ioError(to, e);
  }
}

/**
 * `sync: false`: the file is not fsynced; `rename: false`: it is left under its temporary name
 * (`file` + TMP_SUFFIX) for the caller to rename once the file system is durable (commit/batch-commit.ts).
 */
export async function writeFileAtomic(
  file: string,
  data: Buffer | string,
  mode: number,
  opts: { sync?: boolean; rename?: boolean } = {},
): Promise<void> {
  const tmp = file + TMP_SUFFIX;
  let created = false;
  try {
    const fh = await fsp.open(tmp, 'w', mode);
    created = true;
    try {
      await fh.writeFile(data);
      if (opts.sync !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.rename !== false) await fsp.rename(tmp, file);
  } catch (e) {
    // A partial temporary file only takes space (the start-up sweep would remove it too).
    if (created) await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw ioError(file, e);
  }
}

export async function renameDurable(from: string, to: string): Promise<void> {
  try {
    await fsp.rename(from, to);
  } catch (e) {
    throw ioError(to, e);
  }
}

/** What to do about a file-system error, by errno; every hint names output.dir (README "Exit codes": 8). */
const IO_HINTS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on device; free disk space on output.dir',
  EDQUOT: 'disk quota exceeded; free space or raise the quota on output.dir',
  EROFS: 'read-only file system; mount output.dir read-write',
  EACCES: 'permission denied; make output.dir writable by this user',
  EPERM: 'operation not permitted; make output.dir writable by this user',
  EIO: 'I/O error; check the disk of output.dir',
};

const READ_SYSCALLS = new Set(['read', 'scandir', 'stat', 'lstat', 'access', 'readlink']);

/**
 * A file-system error as the one-line OUTPUT_IO error (exit 8, not retryable):
 * `cannot write <path> (<CODE>): <what it means>; <what to do about output.dir>`.
 */
export function ioError(file: string, e: unknown): EgressError {
  if (e instanceof EgressError) return e;
  const err = (e ?? {}) as NodeJS.ErrnoException;
  const code = typeof err.code === 'string' && err.code ? err.code : 'EIO';
  const verb = err.syscall && READ_SYSCALLS.has(err.syscall) ? 'cannot read' : 'cannot write';
  const hint = IO_HINTS[code] ?? 'check output.dir and free disk space';
  return new EgressError('OUTPUT_IO', `${verb} ${file} (${code}): ${hint}`, { cause: e });
}
