/**
 * One syncfs(2) instead of an fsync per file and folder (native/syncfs.c): makes everything
 * written on output.dir's file system durable at once. commit/sync-policy.ts decides when.
 * https://man7.org/linux/man-pages/man2/syncfs.2.html
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { nativeSyncfs } from './deflate.js';
import { ioError } from './atomic.js';

/** Whether syncfs can be called here (the addon is built, on Linux). */
export const syncfsAvailable = (): boolean => nativeSyncfs !== null && process.platform === 'linux';

/** The running kernel's version, "major.minor" (os.release() "6.1.0-18-amd64" → "6.1"). */
export const kernelVersion = (): string => /^(\d+\.\d+)/.exec(release())?.[1] ?? '0.0';

/** Bytes the kernel has yet to write back (Dirty + Writeback of /proc/meminfo), or null if unknown. */
export function dirtyBytes(): number | null {
  try {
    const m = readFileSync('/proc/meminfo', 'latin1');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(m)?.[1] ?? NaN);
    const n = (kb('Dirty') + kb('Writeback')) * 1024;
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** syncfs of the file system that holds `dir`; its failure (EIO, ...) is an OUTPUT_IO error. */
export function syncFileSystem(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!nativeSyncfs) return reject(new Error('syncfs is not available'));
    nativeSyncfs(dir, (err) => (err ? reject(ioError(dir, err)) : resolve()));
  });
}
