/**
 * When a batch's files are made durable by one syncfs instead of an fsync each
 * (src/commit/sync-policy.ts), and the syncfs call itself (src/output/syncfs.ts, native/syncfs.c).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { batchSync, SYNCFS_DIRTY_PER_FSYNC, SYNCFS_MIN_TABLES } from '../../src/commit/sync-policy.js';
import { dirtyBytes, kernelVersion, syncFileSystem, syncfsAvailable } from '../../src/output/syncfs.js';
import { EgressError } from '../../src/errors.js';

describe('batchSync', () => {
  const ok = { tables: SYNCFS_MIN_TABLES, fsyncs: SYNCFS_MIN_TABLES * 5, available: true, kernel: '6.1', dirtyBytes: 1 << 20 };
  it('one syncfs for many tables when what it may write back costs less than their fsyncs, on a kernel that reports its errors', () => {
    expect(batchSync(ok)).toBe('filesystem');
    expect(batchSync({ ...ok, kernel: '5.8' })).toBe('filesystem');
    expect(batchSync({ ...ok, dirtyBytes: ok.fsyncs * SYNCFS_DIRTY_PER_FSYNC })).toBe('filesystem');
    // 200 tables' 1,000 fsyncs are worth 250 MiB of write-back.
    expect(batchSync({ ...ok, tables: 200, fsyncs: 1000, dirtyBytes: 250 * 1024 * 1024 })).toBe('filesystem');
  });
  it('an fsync each otherwise', () => {
    expect(batchSync({ ...ok, tables: SYNCFS_MIN_TABLES - 1 })).toBe('files');
    expect(batchSync({ ...ok, available: false })).toBe('files');
    // syncfs returned 0 after a write-back error before Linux 5.8.
    expect(batchSync({ ...ok, kernel: '5.7' })).toBe('files');
    expect(batchSync({ ...ok, kernel: '4.19' })).toBe('files');
    expect(batchSync({ ...ok, dirtyBytes: ok.fsyncs * SYNCFS_DIRTY_PER_FSYNC + 1 })).toBe('files');
    expect(batchSync({ ...ok, tables: 200, fsyncs: 1000, dirtyBytes: 251 * 1024 * 1024 })).toBe('files');
    expect(batchSync({ ...ok, dirtyBytes: null })).toBe('files');
  });
});

describe('syncFileSystem', () => {
  it.runIf(syncfsAvailable())('syncs a folder\'s file system; a missing folder is an OUTPUT_IO error', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-syncfs-'));
    try {
      writeFileSync(path.join(dir, 'f'), 'x');
      await expect(syncFileSystem(dir)).resolves.toBeUndefined();
      const err = await syncFileSystem(path.join(dir, 'missing')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EgressError);
      expect((err as EgressError).code).toBe('OUTPUT_IO');
      expect((err as EgressError).message).toMatch(/missing \(ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('reads the kernel version and the dirty memory of this machine', () => {
    expect(kernelVersion()).toMatch(/^\d+\.\d+$/);
    if (process.platform === 'linux') expect(dirtyBytes()).toBeGreaterThanOrEqual(0);
  });
});
