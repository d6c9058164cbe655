/**
 * A compressed file that is not fsynced where it is written (`compressed: true, fsync: false`: the
 * small files of an export's query of several COPYs) is opened, written and closed with synchronous
 * calls (output/gzip-file.ts `direct`), not through a WriteStream: the same bytes, sizes and sha256
 * either way, written by the caller or through fd() by another writer (the sink's thread), every
 * descriptor closed, and a failure reported as an output error with nothing left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { GzipFileWriter } from '../../src/output/gzip-file.js';
import { isEgressError } from '../../src/errors.js';

const openFds = () => readdirSync('/proc/self/fd').length;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('GzipFileWriter, direct (compressed, not fsynced)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-direct-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes what the stream writes: the same file, size and sha256, in one chunk or many', async () => {
    const csv = Buffer.from(Array.from({ length: 5000 }, (_, i) => `${i},${randomBytes(12).toString('hex')}\n`).join(''));
    const gz = Buffer.concat([zlib.gzipSync(csv.subarray(0, 40_000)), zlib.gzipSync(csv.subarray(40_000))]);
    for (const [name, fsync] of [['stream', true], ['direct', false]] as const) {
      for (const pieces of [1, 7]) {
        const file = path.join(dir, `${name}-${pieces}.csv.gz`);
        const w = new GzipFileWriter(file, 1, 0o600, { compressed: true, fsync });
        const step = Math.ceil(gz.length / pieces);
        for (let o = 0; o < gz.length; o += step) await w.writeCompressed(gz.subarray(o, o + step), 0);
        w.rawBytes = csv.length;
        const { stats, durable } = await w.end();
        await durable;
        const onDisk = readFileSync(file);
        expect(onDisk.equals(gz), `${name}, ${pieces} pieces`).toBe(true);
        expect(stats).toEqual({ bytes: gz.length, rawBytes: csv.length, sha256: sha(gz) });
        expect(zlib.gunzipSync(onDisk).equals(csv)).toBe(true);
      }
    }
  });

  it('gives a descriptor another writer fills, and closes it at the end: no descriptor left open', async () => {
    const before = openFds();
    for (let i = 0; i < 200; i++) {
      const file = path.join(dir, `fd-${i}.csv.gz`);
      const w = new GzipFileWriter(file, 1, 0o600, { compressed: true, fsync: false });
      const gz = zlib.gzipSync(Buffer.from(`id\n${i}\n`));
      // What the sink's thread does (native/copy_fd.c): it writes and hashes the bytes itself.
      writeSync(await w.fd(), gz);
      const { stats, durable } = await w.end({ bytes: gz.length, sha256: sha(gz) });
      await durable;
      expect(stats.bytes).toBe(gz.length);
      expect(readFileSync(file).equals(gz)).toBe(true);
    }
    expect(openFds()).toBe(before);
  });

  it('a file that cannot be created is an output error naming it; abort leaves no file and no descriptor', async () => {
    const before = openFds();
    const missing = path.join(dir, 'no-such-folder', 'x.csv.gz');
    const w = new GzipFileWriter(missing, 1, 0o600, { compressed: true, fsync: false });
    const err = await w.fd().then(() => null, (e: unknown) => e);
    expect(isEgressError(err) && err.code === 'OUTPUT_IO').toBe(true);
    expect(String((err as Error).message)).toContain(missing);
    expect(() => w.writeCompressed(Buffer.from('x'), 1)).toThrow(/no-such-folder/);
    await w.abort();
    // Aborted after a write: the file is removed and its descriptor closed.
    const file = path.join(dir, 'aborted.csv.gz');
    const a = new GzipFileWriter(file, 1, 0o600, { compressed: true, fsync: false });
    await a.writeCompressed(zlib.gzipSync(Buffer.from('id\n1\n')), 5);
    await a.abort();
    expect(existsSync(file)).toBe(false);
    expect(openFds()).toBe(before);
  });
});
