/**
 * Durable file publication (SPEC §3): write to a temporary name, fsync, rename, fsync the
 * directory. A reader never sees a half-written file, and after a crash a renamed file is whole.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { EgressError } from '../errors.js';

export const TMP_SUFFIX = '.tmp';

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
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

export async function writeFileAtomic(file: string, data: Buffer | string, mode: number): Promise<void> {
  const tmp = file + TMP_SUFFIX;
  try {
    const fh = await fsp.open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
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

export function ioError(file: string, e: unknown): EgressError {
  if (e instanceof EgressError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
  return new EgressError('OUTPUT_IO', `cannot write ${file} (${code}); check output.dir and free disk space`, {
    cause: e,
  });
}
